"""Written class descriptions and caption templates: labels become sentences (RS5M's rule-based captions).

Zhang et al., "RS5M and GeoRSCLIP: a large scale vision-language dataset and a large vision-
language model for remote sensing" (IEEE TGRS 2024) turn the labels of classification sets into
captions with templates; a sentence that says what the class *looks like* ("a residential area
with dense houses") teaches a contrastive model more than "a photo of dense_residential".

``CLASS_DESCRIPTIONS`` maps a readable class name (as
:func:`skylens.datasets.readable_class_name` writes it) to two or three short noun phrases
describing what is visible from above. Names cover the scene classes of UC Merced, NWPU-RESISC45,
EuroSAT, AID, RSSCN7, WHU-RS19, PatternNet and SIRI-WHU; ``OBJECT_NAMES`` gives singular/plural
words for DOTA's object classes. :func:`class_captions` renders captions for a class; a class
without a description still gets template captions from its name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

#: readable class name -> noun phrases of what the scene looks like from above.
CLASS_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "agricultural": ("farmland divided into crop fields", "cultivated fields in regular strips"),
    "airplane": ("an airplane parked on the apron of an airport", "an aircraft on tarmac"),
    "airport": (
        "an airport with runways, taxiways and terminal buildings",
        "airport aprons with parked aircraft",
    ),
    "annual crop": (
        "fields of annual crops in a patchwork of parcels",
        "cropland with bare and green parcels",
    ),
    "bare land": (
        "bare land with exposed soil and little vegetation",
        "an empty plot of bare earth",
    ),
    "baseball diamond": (
        "a baseball diamond with a fan-shaped infield",
        "a baseball field with a sandy infield",
    ),
    "basketball court": ("a basketball court with painted lines", "outdoor basketball courts"),
    "beach": ("a sandy beach beside the sea", "a shoreline where waves meet sand"),
    "bridge": ("a bridge crossing a river", "a bridge spanning water with a road on it"),
    "buildings": ("a block of buildings with flat roofs", "densely packed buildings and streets"),
    "center": ("a city centre with large buildings around a plaza", "a dense urban centre"),
    "chaparral": (
        "chaparral shrubland with scattered bushes",
        "dry scrub vegetation on bare ground",
    ),
    "church": ("a church with a cross-shaped roof", "a church building among houses"),
    "circular farmland": ("circular fields of centre-pivot irrigation", "round crop fields"),
    "cloud": ("clouds covering the ground", "white clouds seen from above"),
    "commercial": (
        "a commercial district with large buildings and car parks",
        "shops and offices along streets",
    ),
    "commercial area": (
        "a commercial district with large buildings and car parks",
        "shops and offices along streets",
    ),
    "dense residential": (
        "a residential area with dense houses",
        "closely packed homes along narrow streets",
    ),
    "desert": ("a desert of sand with no vegetation", "dunes and bare sand"),
    "farmland": ("farmland divided into crop fields", "cultivated fields of different colours"),
    "forest": ("a dense forest of tree crowns", "woodland with continuous tree cover"),
    "freeway": ("a freeway with several lanes of traffic", "a multi-lane highway"),
    "golf course": (
        "a golf course with fairways, greens and sand bunkers",
        "green fairways among trees",
    ),
    "ground track field": ("a running track around a sports field", "an oval athletics track"),
    "harbor": ("a harbour with boats moored at docks", "piers and boats in a harbour"),
    "harbour": ("a harbour with boats moored at docks", "piers and boats in a harbour"),
    "herbaceous vegetation": (
        "land covered by grass and low plants",
        "herbaceous vegetation without trees",
    ),
    "highway": ("a highway with cars on it", "a road through the landscape"),
    "industrial": (
        "an industrial area with large factory buildings",
        "warehouses and industrial plants",
    ),
    "industrial area": (
        "an industrial area with large factory buildings",
        "warehouses and industrial plants",
    ),
    "intersection": ("a road intersection with crossing streets", "a crossroads with traffic"),
    "island": ("an island surrounded by water", "a small island in the sea"),
    "lake": ("a lake surrounded by land", "a body of still water"),
    "meadow": ("a meadow of grass", "an open grassy field"),
    "medium residential": (
        "a residential area with houses and gardens",
        "suburban homes with trees",
    ),
    "mobile home park": ("a mobile home park with rows of trailers", "closely spaced mobile homes"),
    "mountain": ("mountains with ridges and valleys", "rugged mountainous terrain"),
    "overpass": ("an overpass where roads cross at different levels", "an elevated road crossing"),
    "palace": ("a palace with large ornate buildings and courtyards", "a palace complex"),
    "park": ("a park with lawns, trees and paths", "an urban park with green space"),
    "parking": ("a parking lot full of cars", "rows of parked cars"),
    "parking lot": ("a parking lot with rows of parked cars", "a car park"),
    "pasture": ("pasture land of grass for grazing", "green grazing fields"),
    "permanent crop": ("orchards and vineyards in regular rows", "permanent crops in rows"),
    "playground": ("a playground with a sports field", "a school sports ground"),
    "pond": ("a pond surrounded by vegetation", "a small body of water"),
    "port": ("a port with docks, cranes and ships", "a seaport with moored ships"),
    "railway": ("railway tracks running through the land", "parallel railway lines"),
    "railway station": ("a railway station with tracks and platforms", "a train station"),
    "rectangular farmland": ("rectangular crop fields", "farmland in rectangular parcels"),
    "residential": ("a residential area with houses", "homes along streets"),
    "resort": ("a resort with buildings, pools and green space", "a holiday resort"),
    "river": ("a river winding through the land", "a river with banks on both sides"),
    "roundabout": ("a roundabout where roads meet in a circle", "a circular road junction"),
    "runway": ("an airport runway with markings", "a long paved runway"),
    "school": ("a school with buildings and a sports field", "school buildings and playgrounds"),
    "sea": ("open sea water", "the surface of the sea"),
    "sea ice": ("sea ice floating on dark water", "ice floes on the sea"),
    "sea lake": ("a large body of water", "open water of a sea or lake"),
    "ship": ("a ship sailing on water", "a ship at sea"),
    "snowberg": ("snow-covered land", "snow and ice on mountains"),
    "sparse residential": (
        "a residential area with scattered houses",
        "a few houses among trees and fields",
    ),
    "square": ("a city square surrounded by buildings", "an open paved square"),
    "stadium": ("a stadium with a sports field and stands", "a sports stadium"),
    "storage tank": ("round storage tanks", "cylindrical storage tanks of an oil depot"),
    "storage tanks": ("round storage tanks", "cylindrical storage tanks of an oil depot"),
    "swimming pool": ("a swimming pool beside houses", "blue swimming pools"),
    "tennis court": ("a tennis court with painted lines", "tennis courts beside buildings"),
    "terrace": ("terraced fields on a hillside", "stepped terraces on slopes"),
    "thermal power station": (
        "a thermal power station with cooling towers and chimneys",
        "a power plant",
    ),
    "viaduct": ("a viaduct carrying a road over the land", "an elevated road bridge"),
    "water": ("open water", "a water surface"),
    "wetland": ("a wetland with marsh vegetation and pools", "marshland with shallow water"),
    "idle land": ("idle land without buildings or crops", "unused open land"),
}

#: DOTA object class -> (singular, plural) words.
OBJECT_NAMES: dict[str, tuple[str, str]] = {
    "plane": ("plane", "planes"),
    "ship": ("ship", "ships"),
    "storage-tank": ("storage tank", "storage tanks"),
    "baseball-diamond": ("baseball diamond", "baseball diamonds"),
    "tennis-court": ("tennis court", "tennis courts"),
    "basketball-court": ("basketball court", "basketball courts"),
    "ground-track-field": ("ground track field", "ground track fields"),
    "harbor": ("harbour", "harbours"),
    "bridge": ("bridge", "bridges"),
    "large-vehicle": ("large vehicle", "large vehicles"),
    "small-vehicle": ("small vehicle", "small vehicles"),
    "helicopter": ("helicopter", "helicopters"),
    "roundabout": ("roundabout", "roundabouts"),
    "soccer-ball-field": ("soccer field", "soccer fields"),
    "swimming-pool": ("swimming pool", "swimming pools"),
    "container-crane": ("container crane", "container cranes"),
    "airport": ("airport", "airports"),
    "helipad": ("helipad", "helipads"),
}

#: Caption templates; ``{desc}`` is a description (or the class name), ``{platform}`` the imagery.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "{platform} image of {desc}.",
    "{desc_cap} seen from above.",
    "an overhead view of {desc}.",
    "this {platform_noun} shows {desc}.",
)

#: The plain class prompt (kind ``class_prompt``), as zero-shot classification writes it.
CLASS_PROMPT = "a {platform_noun} of {name}."

#: Known sources -> the kind of imagery (article included).
PLATFORMS: dict[str, str] = {
    "eurosat": "a Sentinel-2 satellite",
    "ucm_landuse": "an aerial",
    "nwpu_resisc45": "a satellite",
    "dota": "a satellite",
}


def object_words(name: str, count: int = 1) -> str:
    """Readable word(s) for an object class, plural when ``count != 1``."""
    key = name.strip().lower()
    single, plural = OBJECT_NAMES.get(key, (key.replace("-", " ").replace("_", " "),) * 2)
    if key not in OBJECT_NAMES:
        plural = single if single.endswith("s") else single + "s"
    return single if count == 1 else plural


def describe(name: str) -> tuple[str, ...]:
    """Descriptions of a class (its written ones, else ``("a <name> area",)``-style fallback)."""
    key = " ".join(name.lower().replace("_", " ").replace("-", " ").split())
    if key in CLASS_DESCRIPTIONS:
        return CLASS_DESCRIPTIONS[key]
    article = "an" if key[:1] in "aeiou" else "a"
    return (f"{article} {key}", f"{article} {key} scene")


def class_captions(name: str, source: str = "", n: int = 3, key: str = "") -> list[str]:
    """``n`` captions for an image of class ``name``.

    The (template, description) pairs are ordered by a hash of ``key`` (e.g. the image id), so
    different images of a class get different sentences, the same image always the same ones.

    Args:
        name: readable class name.
        source: dataset name, choosing the platform words (aerial, Sentinel-2...).
        n: captions to return (at most templates x descriptions).
        key: what varies the choice between images.
    """
    platform = PLATFORMS.get(source, "a remote sensing")
    noun = platform.split(" ", 1)[1] if " " in platform else platform
    pairs = [(t, d) for d in describe(name) for t in CAPTION_TEMPLATES]
    pairs.sort(key=lambda td: hashlib.blake2b(f"{key}|{td}".encode(), digest_size=4).digest())
    out = []
    for template, desc in pairs[:n]:
        out.append(
            template.format(
                desc=desc,
                desc_cap=desc[:1].upper() + desc[1:],
                platform=platform[:1].upper() + platform[1:],
                platform_noun=f"{noun} image",
            ).replace("  ", " ")
        )
    return [s[:1].upper() + s[1:] for s in out]


def class_prompt(name: str, source: str = "") -> str:
    """The plain class prompt for ``name`` (kind ``class_prompt``)."""
    platform = PLATFORMS.get(source, "a remote sensing")
    noun = platform.split(" ", 1)[1] if " " in platform else platform
    return CLASS_PROMPT.format(platform_noun=f"{noun} image", name=name)


def known_classes(names: Sequence[str]) -> list[str]:
    """The names among ``names`` that have a written description."""
    return [n for n in names if n.lower() in CLASS_DESCRIPTIONS]
