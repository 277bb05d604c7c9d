/**
 * `/docs`: a self-contained interactive reference. It reads `/openapi.json`, lists every operation
 * with its parameters and schemas, and sends requests from the page with the key you paste. No
 * external scripts, so it works offline and under a strict CSP.
 */
export const DOCS_PAGE = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cordon API reference</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1d2433; }
  h1 { margin-bottom: 0; } .lede { color: #556; margin-top: .25rem; }
  details { border: 1px solid #d8dce6; border-radius: 6px; margin: .5rem 0; padding: .5rem .75rem; }
  summary { cursor: pointer; font-family: ui-monospace, monospace; }
  .method { display: inline-block; min-width: 4.5rem; font-weight: 700; text-transform: uppercase; }
  .get { color: #0a7d32; } .post { color: #1f5fbf; } .patch { color: #a15c00; }
  pre, textarea, input { font: 13px ui-monospace, monospace; }
  pre { background: #f5f6f9; padding: .5rem; overflow: auto; max-height: 24rem; }
  textarea { width: 100%; min-height: 8rem; } input { width: 100%; }
  label { display: block; margin-top: .5rem; font-weight: 600; } button { margin-top: .5rem; }
</style>
</head>
<body>
<h1>Cordon API</h1>
<p class="lede">Generated from <a href="/openapi.json">/openapi.json</a>. Paste a key to try requests from this page.</p>
<label for="key">Bearer token (API key, or ADMIN_TOKEN for admin routes)</label>
<input id="key" placeholder="ck_…" autocomplete="off">
<div id="operations">Loading…</div>
<script type="module">
const spec = await (await fetch("/openapi.json")).json();
const root = document.getElementById("operations");
root.textContent = "";
const resolve = (schema) => schema && schema.$ref ? spec.components.schemas[schema.$ref.split("/").pop()] : schema;
for (const [path, methods] of Object.entries(spec.paths)) {
  for (const [method, op] of Object.entries(methods)) {
    const box = document.createElement("details");
    const head = document.createElement("summary");
    head.innerHTML = '<span class="method ' + method + '">' + method + "</span> ";
    head.append(path + " — " + op.summary);
    box.append(head);
    const fields = {};
    for (const p of op.parameters ?? []) {
      const label = document.createElement("label");
      label.textContent = p.name + " (" + p.in + (p.required ? ", required" : "") + ")";
      const input = document.createElement("input");
      fields[p.name] = { input, where: p.in };
      box.append(label, input);
    }
    let body;
    const bodySchema = op.requestBody && resolve(op.requestBody.content["application/json"].schema);
    if (bodySchema) {
      const label = document.createElement("label");
      label.textContent = "JSON body";
      body = document.createElement("textarea");
      body.value = "{}";
      const schema = document.createElement("pre");
      schema.textContent = JSON.stringify(bodySchema, null, 2);
      box.append(label, body, schema);
    }
    const send = document.createElement("button");
    send.textContent = "Send";
    const out = document.createElement("pre");
    send.onclick = async () => {
      let url = path;
      const query = new URLSearchParams();
      for (const [name, field] of Object.entries(fields)) {
        if (field.where === "path") url = url.replace("{" + name + "}", encodeURIComponent(field.input.value));
        else if (field.input.value) query.set(name, field.input.value);
      }
      if (query.size) url += "?" + query;
      const headers = { authorization: "Bearer " + document.getElementById("key").value };
      if (body) headers["content-type"] = "application/json";
      const response = await fetch(url, { method: method.toUpperCase(), headers, body: body ? body.value : undefined });
      out.textContent = response.status + " " + response.statusText + "\n" + (await response.text());
    };
    box.append(send, out);
    root.append(box);
  }
}
</script>
</body>
</html>
`;
