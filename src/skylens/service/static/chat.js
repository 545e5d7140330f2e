// skylens chat panel: one conversation with /api/chat (session id kept here), an image,
// the turns with their expert and confidence, citations, and drawn geometry. Uses app.js's
// helpers ($, api, say, sayFailure, drawFootprints), loaded before this file.
"use strict";

let chatSession = null;
let chatImageSent = false;

function chatLine(who, text, extra = "") {
  const li = document.createElement("li");
  li.className = who;
  const b = document.createElement("b");
  b.textContent = who === "you" ? "you: " : extra + ": ";
  li.append(b, document.createTextNode(text));
  $("chat-log").append(li);
  return li;
}

function chatCitations(li, citations) {
  if (!citations || !citations.length) return;
  const ol = document.createElement("ol");
  ol.className = "citations";
  for (const c of citations) {
    const item = document.createElement("li");
    item.value = c.n;
    item.textContent = `${c.source} (page ${c.page}, chunk ${c.chunk}, score ${c.score.toFixed(2)})`;
    ol.append(item);
  }
  li.append(ol);
}

$("chat-image").addEventListener("change", () => {
  const file = $("chat-image").files[0];
  chatImageSent = false;
  if (file) $("chat-preview").src = URL.createObjectURL(file);
  $("chat-preview").hidden = !file;
});

$("chat-new").addEventListener("click", () => {
  chatSession = null;
  chatImageSent = false;
  $("chat-log").replaceChildren();
  say("chat-message", "New conversation.");
});

$("chat-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("chat-text").value.trim();
  if (!text) return;
  const form = new FormData();
  form.append("message", text);
  if (chatSession) form.append("session", chatSession);
  else if ($("chat-kb").value.trim()) form.append("kb", $("chat-kb").value.trim());
  const file = $("chat-image").files[0];
  if (file && !chatImageSent) form.append("image", file, file.name);
  chatLine("you", text);
  $("chat-text").value = "";
  say("chat-message", "Thinking…");
  try {
    const r = await api("/api/chat", { method: "POST", body: form });
    chatSession = r.session;
    if (file) chatImageSent = true;
    const li = chatLine(r.supported ? "skylens" : "skylens unsupported", r.answer,
      `${r.expert} ${(100 * r.confidence).toFixed(0)}%`);
    chatCitations(li, r.citations);
    const features = r.geometry && r.geometry.features ? r.geometry.features : [];
    drawFootprints("chat-geometry", features.map((f, i) => [f.geometry, `region ${i + 1}`]),
      "No geometry for this turn");
    say("chat-message", `Turn ${r.turn} answered by ${r.expert} in ${r.latency_ms.toFixed(0)} ms.`);
  } catch (e) {
    sayFailure("chat-message", "Chat", e);
  }
});
