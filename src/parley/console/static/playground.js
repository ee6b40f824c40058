// The playground: each message is an ordinary POST /v1/responses (through /console/api/responses, with the
// signed-in key), streamed; the next message continues the turn with previous_response_id.
"use strict";

let previousId = null;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function tools() {
  const list = [];
  if (document.getElementById("web-search").checked) list.push({ type: "web_search" });
  const url = document.getElementById("mcp-url").value.trim();
  if (url) {
    list.push({ type: "mcp", server_label: document.getElementById("mcp-label").value.trim() || "mcp",
                server_url: url, require_approval: "never" });
  }
  const functions = document.getElementById("functions").value.trim();
  if (functions) {
    const parsed = JSON.parse(functions);  // a SyntaxError is shown to the user
    for (const tool of Array.isArray(parsed) ? parsed : [parsed]) list.push(tool);
  }
  return list;
}

async function* events(reply) {
  const reader = reply.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim()).join("\n");
      if (data && data !== "[DONE]") yield JSON.parse(data);
    }
  }
}

function describeTool(item) {
  if (item.type === "mcp_call") {
    return `${item.server_label} · ${item.name}(${item.arguments})` + (item.error ? ` → error: ${item.error}` : ` → ${item.output}`);
  }
  if (item.type === "web_search_call") return `web search: ${(item.action && item.action.query) || ""}`;
  if (item.type === "function_call") return `function call ${item.name}(${item.arguments}): the client runs it`;
  if (item.type === "mcp_list_tools") return `${item.server_label}: ${item.tools.length} tools listed`;
  return null;
}

async function send(event) {
  event.preventDefault();
  const form = document.getElementById("playground");
  const error = document.getElementById("playground-error");
  const conversation = document.getElementById("conversation");
  const message = document.getElementById("message");
  const button = document.getElementById("send");
  error.hidden = true;
  let body;
  try {
    body = { model: document.getElementById("model").value, input: message.value, stream: true, tools: tools() };
  } catch (exc) {
    error.textContent = `Function tools: ${exc.message}`;
    error.hidden = false;
    return;
  }
  const instructions = document.getElementById("instructions").value.trim();
  if (instructions) body.instructions = instructions;
  if (previousId) body.previous_response_id = previousId;
  conversation.append(el("div", "turn user", message.value));
  const turn = el("div", "turn assistant");
  const text = el("span", "answer");
  const meta = el("div", "meta");
  turn.append(text, meta);
  conversation.append(turn);
  message.value = "";
  button.disabled = true;
  try {
    const reply = await fetch("/console/api/responses", {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", [form.dataset.header]: "1" }, body: JSON.stringify(body),
    });
    if (!reply.ok) {
      const failure = await reply.json().catch(() => ({}));
      throw new Error((failure.error && failure.error.message) || `HTTP ${reply.status}`);
    }
    for await (const ev of events(reply)) {
      if (ev.type === "response.created") {
        meta.textContent = `${ev.response.id} · streaming…`;
      } else if (ev.type === "response.output_text.delta") {
        text.textContent += ev.delta;
      } else if (ev.type === "response.output_item.done") {
        const line = describeTool(ev.item);
        if (line) turn.insertBefore(el("div", "tool", line), text);
      } else if (ev.type === "error") {
        throw new Error(ev.message);
      } else if (["response.completed", "response.incomplete", "response.failed"].includes(ev.type)) {
        const r = ev.response;
        meta.textContent = "";
        const link = el("a", "", r.id);
        link.href = `/console/responses/${r.id}`;
        meta.append(link, ` · ${r.status}` + (r.usage ? ` · ${r.usage.input_tokens} in / ${r.usage.output_tokens} out` : ""));
        if (r.status !== "failed") {
          previousId = r.id;
          document.getElementById("chain-note").textContent = `the next message continues ${r.id}`;
        }
      }
    }
  } catch (exc) {
    error.textContent = exc.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("playground").addEventListener("submit", send);
  document.getElementById("message").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) document.getElementById("send").click();
  });
  document.getElementById("new-chat").addEventListener("click", () => {
    previousId = null;
    document.getElementById("conversation").replaceChildren();
    document.getElementById("chain-note").textContent = "";
  });
});
