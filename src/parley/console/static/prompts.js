// The Prompts page's form: a new prompt, or a prompt's next version, saved through /console/api/prompts.
"use strict";

function promptBody() {
  const body = { name: document.getElementById("prompt-name").value.trim() };
  const model = document.getElementById("prompt-model").value.trim();
  const instructions = document.getElementById("prompt-instructions").value;
  const message = document.getElementById("prompt-message").value;
  const settings = document.getElementById("prompt-settings").value.trim();
  if (settings) Object.assign(body, JSON.parse(settings));  // a SyntaxError is shown to the user
  if (model) body.model = model;
  if (instructions.trim()) body.instructions = instructions;
  if (message.trim()) body.input = [{ role: "user", content: message }];
  return body;
}

async function savePrompt(event) {
  event.preventDefault();
  const form = document.getElementById("prompt-form");
  const error = document.getElementById("prompt-error");
  error.hidden = true;
  try {
    const id = form.dataset.prompt;
    const reply = await fetch(id ? `/console/api/prompts/${encodeURIComponent(id)}/versions` : "/console/api/prompts", {
      method: "POST", headers: { "content-type": "application/json", [form.dataset.writeHeader]: "1" },
      body: JSON.stringify(promptBody()),
    });
    const saved = await reply.json();
    if (!reply.ok) throw new Error(saved.error.message + (saved.error.param ? ` (${saved.error.param})` : ""));
    window.location.assign(`/console/prompts/${encodeURIComponent(saved.id)}`);
  } catch (problem) {
    error.textContent = problem.message;
    error.hidden = false;
  }
}

document.getElementById("prompt-form").addEventListener("submit", savePrompt);
