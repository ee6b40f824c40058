"""What the console's pages show, built from stored data by pure functions (no I/O, no HTML): a stored
response's timeline, its input items, and the split of its time."""

from __future__ import annotations

import json
from typing import Any

DATA_URL_SHOWN = 64  # characters of a data: URL (an inline image or file) a page shows


def short_url(url: str | None) -> str:
    if not url:
        return ""
    if url.startswith("data:") and len(url) > DATA_URL_SHOWN:
        return f"{url[:DATA_URL_SHOWN]}… ({len(url):,} characters)"
    return url


def pretty_json(value: Any) -> str:
    """JSON text indented for reading (a string holding JSON, as tool arguments are, is parsed first)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def _texts(content: Any) -> list[dict[str, Any]]:
    """A message's content as parts the page shows: text (with its citations) and images and files."""
    if isinstance(content, str):
        return [{"kind": "text", "text": content}]
    parts = []
    for part in content or []:
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            parts.append({"kind": "text", "text": part.get("text", ""),
                          "citations": [_citation(a) for a in part.get("annotations") or []]})
        elif kind == "refusal":
            parts.append({"kind": "text", "text": part.get("refusal", ""), "refusal": True})
        elif kind == "input_image":
            parts.append({"kind": "image", "url": short_url(part.get("image_url")) or part.get("file_id", "")})
        elif kind == "input_file":
            parts.append({"kind": "file", "name": part.get("filename") or part.get("file_id") or
                          short_url(part.get("file_url") or part.get("file_data"))})
        else:
            parts.append({"kind": "json", "json": pretty_json(part)})
    return parts


def link(url: Any) -> str | None:
    """``url`` when a page may link to it (http or https), else ``None``: a model's ``javascript:`` or ``data:``
    URL is shown as text, never as a link."""
    if isinstance(url, str) and url.split(":", 1)[0].strip().lower() in ("http", "https") and "://" in url:
        return url
    return None


def _citation(annotation: dict[str, Any]) -> dict[str, Any]:
    kind = annotation.get("type")
    if kind == "url_citation":
        return {"label": annotation.get("title") or annotation.get("url"), "url": link(annotation.get("url"))}
    if kind in ("file_citation", "container_file_citation"):
        return {"label": annotation.get("filename") or annotation.get("file_id"), "url": None}
    return {"label": kind, "url": None}


def item_view(item: dict[str, Any]) -> dict[str, Any]:
    """One input or output item as the page shows it: its type, a title, and the fields worth reading."""
    kind = item.get("type") or ("message" if "role" in item else "item")
    view: dict[str, Any] = {"type": kind, "id": item.get("id"), "status": item.get("status"), "raw": pretty_json(item)}
    if kind == "message":
        view.update(title=item.get("role", "message"), parts=_texts(item.get("content")))
    elif kind == "reasoning":
        view.update(title="reasoning", parts=_texts(item.get("summary")) + _texts(item.get("content")))
    elif kind in ("function_call", "custom_tool_call"):
        view.update(title=f"{item.get('name')} (client tool)", arguments=pretty_json(item.get("arguments") or
                                                                                      item.get("input") or ""))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        view.update(title=f"output of {item.get('call_id')}", output=pretty_json(item.get("output")))
    elif kind == "mcp_call":
        view.update(title=f"{item.get('server_label')} · {item.get('name')}", arguments=pretty_json(
            item.get("arguments") or ""), output=item.get("output"), error=item.get("error"))
    elif kind == "mcp_list_tools":
        view.update(title=f"{item.get('server_label')}: tools listed",
                    tools=[tool.get("name") for tool in item.get("tools") or []], error=item.get("error"))
    elif kind == "mcp_approval_request":
        view.update(title=f"approval asked: {item.get('server_label')} · {item.get('name')}",
                    arguments=pretty_json(item.get("arguments") or ""))
    elif kind == "web_search_call":
        action = item.get("action") or {}
        view.update(title="web search", query=action.get("query"),
                    sources=[source.get("url") for source in action.get("sources") or [] if source.get("url")])
    elif kind == "file_search_call":
        view.update(title="file search", query="; ".join(item.get("queries") or []),
                    results=[{"name": r.get("filename") or r.get("file_id"), "score": r.get("score"),
                              "text": (r.get("text") or "")[:300]} for r in item.get("results") or []])
    elif kind == "code_interpreter_call":
        logs = [o.get("logs") for o in item.get("outputs") or [] if o.get("type") == "logs"]
        images = sum(1 for o in item.get("outputs") or [] if o.get("type") == "image")
        view.update(title=f"code interpreter · {item.get('container_id')}", arguments=item.get("code") or "",
                    output="\n".join(filter(None, logs)) + (f"\n[{images} image(s)]" if images else ""))
    elif kind == "shell_call":
        view.update(title="shell" + (f" · {(item.get('environment') or {}).get('container_id')}"
                                     if (item.get("environment") or {}).get("container_id") else ""),
                    arguments="\n".join((item.get("action") or {}).get("commands") or []))
    elif kind == "shell_call_output":
        view.update(title=f"output of {item.get('call_id')}", output="\n".join(
            f"{o.get('stdout', '')}{o.get('stderr', '')}" for o in item.get("output") or []))
    else:
        view.update(title=kind)
    return view


def timeline(output: list[dict[str, Any]], trace: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The turn in order: each model call (a header with its timing) followed by what it produced, and
    each tool call with its duration.  Output items no step claims (listed tools, items of a response
    stored before timelines were kept) appear in their place, untimed."""
    steps = sorted((trace or {}).get("steps") or [], key=lambda step: step.get("start_ms", 0))
    models = [step for step in steps if step.get("kind") == "model"]
    owner: dict[str, dict[str, Any]] = {}
    for step in steps:
        for item_id in step.get("items") or ([step["item"]] if step.get("item") else []):
            owner[item_id] = step
    entries: list[dict[str, Any]] = []
    shown = 0

    def flush(upto: int) -> None:
        nonlocal shown
        while shown < upto:
            entries.append({"entry": "model", "number": shown + 1, **models[shown]})
            shown += 1

    for item in output:
        step = owner.get(item.get("id") or "")
        if step is not None and step.get("kind") == "model":
            flush(models.index(step) + 1)
        elif step is not None:  # a tool call: the model calls that started before it asked for it
            flush(sum(1 for model in models if model.get("start_ms", 0) <= step.get("start_ms", 0)))
        entries.append({"entry": "item", "item": item_view(item),
                        "ms": step.get("ms") if step is not None and step.get("kind") == "tool" else None})
    flush(len(models))
    return entries


def time_split(trace: dict[str, Any] | None, duration_ms: float | None) -> list[dict[str, Any]]:
    """The response's wall time as model, tools and Parley, each with its share (for a stacked bar)."""
    if not trace:
        return []
    total = trace.get("total_ms") or duration_ms or 0.0
    parts = [("model", trace.get("model_ms", 0.0)), ("tools", trace.get("tool_ms", 0.0)),
             ("parley", trace.get("parley_ms", 0.0))]
    whole = sum(ms for _, ms in parts) or 1.0
    return [{"name": name, "ms": ms, "share": ms / whole * 100, "of_total": total} for name, ms in parts]
