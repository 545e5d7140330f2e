"""Screenshots of the web page for the README, with the default model on real imagery.

Starts ``skylens serve`` in-process (uvicorn, 127.0.0.1, a free port) with the default model and
the seeded UC Merced mosaics of ``bench/bench_change_localize.py`` as the served root, drives
Debian's headless Chromium through Playwright, and saves:

* ``docs/web_classify.png``: an image from the mosaic classified, captioned and asked about;
* ``docs/web_change.png``: the change view on a mosaic pair (before/after by server-side path);
* ``docs/web_localize.png``: the localize view (heatmap and best regions) for a phrase.

Run: ``.venv/bin/python bench/web_screenshots.py [--pair m0] [--phrase "a baseball diamond"]``
(after ``python bench/bench_change_localize.py`` has written ``bench/work/change_localize``).
Everything stays on loopback.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import uvicorn
from PIL import Image

from skylens.imagery import read_raster
from skylens.service import create_app

ROOT = Path(__file__).resolve().parents[1]
MOSAICS = ROOT / "bench" / "work" / "change_localize"
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 120_000  # the default model on a loaded 2-core machine: be patient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[uvicorn.Server, str]:
    port = free_port()
    app = create_app(None, model="default", roots=[MOSAICS], token="")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def crop_cell(mosaic: Path, row: int, col: int, tile: int, out: Path) -> Path:
    """One tile of the mosaic as a PNG, to upload on the classify view."""
    with read_raster(mosaic) as r:
        arr = r.read(window=(col * tile, row * tile, tile, tile))
    Image.fromarray(np.ascontiguousarray(arr[..., :3])).save(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--pair", default="m0", help="mosaic pair name under bench/work/change_localize"
    )
    ap.add_argument("--phrase", default="a baseball diamond")
    ap.add_argument("--cell", default="2,3", help="row,col of the tile to classify")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    server, url = start_server()
    tmp = Path(tempfile.mkdtemp(prefix="skylens-shots-"))
    row, col = (int(x) for x in args.cell.split(","))
    tile_png = crop_cell(MOSAICS / f"{args.pair}_before.tif", row, col, 256, tmp / "tile.png")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1150, "height": 900})
            page.set_default_timeout(WAIT_MS)
            page.goto(url + "/")

            page.set_input_files("#image", str(tile_png))
            page.click("#classify-form button[type=submit]")
            page.wait_for_function("document.querySelectorAll('#classes li').length > 0")
            page.click("#caption-form button[type=submit]")
            page.wait_for_function(
                "!document.getElementById('caption-message').textContent.endsWith('…')"
            )
            page.click("#ask-form button[type=submit]")
            page.wait_for_function(
                "!document.getElementById('ask-message').textContent.endsWith('…')"
            )
            page.locator("section:has(#image-title)").screenshot(
                path=str(DOCS / "web_classify.png")
            )

            page.fill("#before-path", f"{args.pair}_before.tif")
            page.fill("#after-path", f"{args.pair}_after.tif")
            page.fill("#change-tile", "256")
            page.click("#change-form button[type=submit]")
            page.wait_for_function("document.getElementById('change-result').hidden === false")
            page.locator("section:has(#change-title)").screenshot(path=str(DOCS / "web_change.png"))

            page.fill("#scene-path", f"{args.pair}_before.tif")
            page.fill("#phrase", args.phrase)
            page.fill("#loc-tile", "256")
            page.fill("#loc-stride", "128")
            page.fill("#loc-top", "3")
            page.click("#localize-form button[type=submit]")
            page.wait_for_function("document.getElementById('localize-result').hidden === false")
            page.locator("section:has(#localize-title)").screenshot(
                path=str(DOCS / "web_localize.png")
            )
            browser.close()
    finally:
        server.should_exit = True
    print("wrote", *(DOCS / f"web_{n}.png" for n in ("classify", "change", "localize")))


if __name__ == "__main__":
    main()
