// Interactive API docs rendered from /openapi.json (no CDN, no framework): every operation with its parameters,
// body fields and responses, and a "Send" form that calls it with the token.
const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => append(Object.assign(document.createElement(tag), props), children);
function append(node, children) {
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

let doc;
const resolve = (s) => (s && s.$ref ? doc.components.schemas[s.$ref.split('/').pop()] : s);
const typeOf = (s) => {
  s = resolve(s) || {};
  if (s.enum) return `one of ${s.enum.join(', ')}`;
  if (s.anyOf) return s.anyOf.map(typeOf).join(' | ');
  const t = Array.isArray(s.type) ? s.type.join(' | ') : s.type || (s.const !== undefined ? JSON.stringify(s.const) : 'object');
  const range = s.minimum !== undefined ? ` ${s.minimum}..${s.maximum}` : s.maxLength ? ` ≤ ${s.maxLength} chars` : '';
  return `${t}${range}${s.format ? ` (${s.format})` : ''}`;
};

function fieldsTable(schema) {
  schema = resolve(schema);
  if (!schema || !schema.properties) return el('p', {}, typeOf(schema));
  const rows = Object.entries(schema.properties).map(([name, s]) =>
    el('tr', {}, el('td', {}, el('code', {}, name), (schema.required || []).includes(name) ? ' *' : ''), el('td', {}, typeOf(s)), el('td', {}, s.default !== undefined ? JSON.stringify(s.default) : ''), el('td', {}, resolve(s)?.description || '')),
  );
  return el('table', {}, el('tr', {}, el('th', {}, 'field'), el('th', {}, 'type'), el('th', {}, 'default'), el('th', {}, 'description')), ...rows);
}

function example(schema) {
  schema = resolve(schema);
  if (!schema?.properties) return '';
  const out = {};
  for (const name of schema.required || []) out[name] = name === 'prompt' ? 'A photo of an astronaut riding a horse on Mars.' : '';
  if (schema.properties.width) Object.assign(out, { width: 512, height: 512, num_inference_steps: 4 });
  return JSON.stringify(out, null, 2);
}

function operation(path, method, op) {
  const isPublic = Array.isArray(op.security) && op.security.length === 0;
  const params = op.parameters || [];
  const inputs = params.map((p) => {
    const input = el('input', { name: p.name });
    input.dataset.in = p.in;
    return el('label', {}, `${p.name} (${p.in})`, input);
  });
  const jsonBody = op.requestBody?.content?.['application/json'];
  const body = jsonBody ? el('textarea', { className: 'try', rows: 6, value: example(jsonBody.schema) }) : null;
  const out = el('pre', {});
  const send = el('button', { type: 'button', textContent: 'Send' });
  send.addEventListener('click', async () => {
    let url = path;
    const headers = {};
    const query = new URLSearchParams();
    for (const i of inputs.map((l) => l.querySelector('input'))) {
      if (!i.value) continue;
      if (i.dataset.in === 'path') url = url.replace(`{${i.name}}`, encodeURIComponent(i.value));
      else if (i.dataset.in === 'header') headers[i.name] = i.value;
      else query.set(i.name, i.value);
    }
    if ($('token').value) headers.authorization = `Bearer ${$('token').value}`;
    if (body) headers['content-type'] = 'application/json';
    out.textContent = '…';
    const res = await fetch(url + (query.size ? `?${query}` : ''), { method: method.toUpperCase(), headers, body: body ? body.value : undefined });
    const text = await res.text();
    out.textContent = `HTTP ${res.status}\n${text.replace(/base64,[A-Za-z0-9+/=]{64,}/g, (m) => `${m.slice(0, 40)}…(${m.length} chars)`).slice(0, 20000)}`;
  });
  const responses = Object.entries(op.responses || {}).map(([code, r]) => el('li', {}, el('b', {}, code), ' ', r.description || ''));
  return el(
    'details',
    { className: 'op' },
    el('summary', {}, el('span', { className: `method ${method}` }, method), el('code', {}, path), ' ', op.summary || '', isPublic ? el('span', { className: 'lock' }, ' (public)') : el('span', { className: 'lock' }, ' (token)')),
    el('div', { className: 'body' }, op.description ? el('p', {}, op.description) : '', ...inputs, jsonBody ? el('div', {}, el('h4', {}, 'Body (JSON)'), fieldsTable(jsonBody.schema), body) : '', el('h4', {}, 'Responses'), el('ul', {}, ...responses), send, out),
  );
}

async function init() {
  $('token').value = sessionStorage.getItem('flux-token') || '';
  $('token').addEventListener('change', () => sessionStorage.setItem('flux-token', $('token').value));
  doc = await (await fetch('/openapi.json')).json();
  $('intro').textContent = `${doc.info.title} ${doc.info.version}: ${doc.info.description}`;
  for (const [path, ops] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(ops)) $('ops').append(operation(path, method, op));
}
init().catch((e) => ($('intro').textContent = `cannot load /openapi.json: ${e.message}`));
