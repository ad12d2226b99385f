// The web page: one static page served by the server itself (GET /). It reads the request rules from /openapi.json
// (the same schema that validates), submits asynchronously (Prefer: respond-async), follows the job's server-sent
// events with fetch (so the token goes in a header, never in a URL), and keeps this session's results in a gallery.
const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem('flux-token') || '', auth: false, job: null, abort: null, gallery: [] };

function headers(extra = {}) {
  const h = { ...extra };
  const token = $('token').value.trim();
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

function fill(select, values, chosen) {
  select.replaceChildren(...values.map((v) => Object.assign(document.createElement('option'), { value: String(v), textContent: String(v), selected: v === chosen })));
}

async function init() {
  $('token').value = state.token;
  const health = await (await fetch('/healthz')).json();
  state.auth = health.auth === true;
  $('token-row').hidden = !state.auth;
  const doc = await (await fetch('/openapi.json')).json();
  const fields = doc.components.schemas.InferenceRequest.properties;
  fill($('width'), fields.width.enum, 512);
  fill($('height'), fields.height.enum, 512);
  $('steps').max = String(fields.num_inference_steps.maximum);
  $('prompt').maxLength = fields.prompt.maxLength;
  fill($('model'), health.models, health.models[0]);
}

const readDataUri = (file) =>
  new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });

/** The request body the form describes (seed left out when blank: the server draws one and returns it). */
async function requestBody() {
  const body = { prompt: $('prompt').value, width: Number($('width').value), height: Number($('height').value), num_inference_steps: Number($('steps').value) };
  if ($('seed').value !== '') body.seed = Number($('seed').value);
  const file = $('image').files[0];
  if (file) {
    body.image = await readDataUri(file);
    body.strength = Number($('strength').value);
  }
  return { body, file };
}

/** The same request as a curl command (the token as $TOKEN, an input image as the file it came from). */
function curlOf(model, body, file) {
  const url = `${location.origin}/v1/inference/${model}`;
  const auth = state.auth ? ` \\\n  -H "Authorization: bearer $TOKEN"` : '';
  const q = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
  if (file) {
    const fields = Object.entries(body).filter(([k]) => k !== 'image').map(([k, v]) => ` \\\n  -F ${q(`${k}=${v}`)}`).join('');
    return `curl -X POST${auth}${fields} \\\n  -F ${q(`image=@${file.name}`)} \\\n  ${url}`;
  }
  return `curl -X POST${auth} \\\n  -H 'Content-Type: application/json' \\\n  -d ${q(JSON.stringify(body))} \\\n  ${url}`;
}

function show(msg, isError = false) {
  $(isError ? 'error' : 'state').textContent = msg;
}

async function submit(ev) {
  ev.preventDefault();
  sessionStorage.setItem('flux-token', $('token').value.trim());
  $('run').hidden = false;
  show('');
  show('', true);
  $('output').hidden = true;
  $('preview').hidden = true;
  $('progress').value = 0;
  const model = $('model').value;
  const { body, file } = await requestBody();
  const curl = curlOf(model, body, file);
  $('curl').textContent = curl;
  $('curl').hidden = false;
  $('copy-curl').hidden = false;
  $('go').disabled = true;
  try {
    const res = await fetch(`/v1/inference/${model}`, { method: 'POST', headers: headers({ 'content-type': 'application/json', prefer: 'respond-async' }), body: JSON.stringify(body) });
    const answer = await res.json();
    if (res.status === 401) {
      $('token-row').hidden = false;
      throw new Error(`${answer.detail} — enter the server's token above`);
    }
    if (res.status !== 202) throw new Error(typeof answer.detail === 'string' ? answer.detail : answer.error?.message ?? `HTTP ${res.status}`);
    state.job = answer.request_id;
    show(`queued (${state.job})`);
    $('cancel').disabled = false;
    await follow(answer.urls.events, body);
  } catch (e) {
    show(String(e.message || e), true);
  } finally {
    $('go').disabled = false;
    $('cancel').disabled = true;
  }
}

/** Reads the job's event stream until it ends. */
async function follow(url, body) {
  state.abort = new AbortController();
  const res = await fetch(url, { headers: headers(), signal: state.abort.signal });
  if (!res.ok) throw new Error(`events: HTTP ${res.status}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const chunk = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const type = /^event: (.*)$/m.exec(chunk)?.[1];
      const data = /^data: (.*)$/m.exec(chunk)?.[1];
      if (!type || !data) continue;
      if (onEvent(type, JSON.parse(data), body)) {
        await reader.cancel().catch(() => {});
        return;
      }
    }
  }
}

/** One event; true when the job has ended. */
function onEvent(type, data, body) {
  if (type === 'status') show(data.status === 'queued' ? `queued (position ${data.queue_position ?? 0})` : data.status);
  else if (type === 'queued') show(`queued (position ${data.queue_position ?? 0})`);
  else if (type === 'running') show('running');
  else if (type === 'step') {
    $('progress').max = data.total_steps;
    $('progress').value = data.step;
    show(`step ${data.step} of ${data.total_steps}`);
  } else if (type === 'preview') {
    // step previews, when the server makes them: {image: data URI, step}
    if (data.image) {
      $('preview').src = data.image;
      $('preview').hidden = false;
    }
  } else if (type === 'succeeded') {
    const r = data.result;
    $('progress').value = $('progress').max;
    $('preview').hidden = true;
    $('output').src = r.images[0];
    $('output').hidden = false;
    $('meta').textContent = `seed ${r.seed} · ${r.inference_status.runtime_ms} ms · ${state.job}`;
    show('succeeded');
    addToGallery(r, body);
    return true;
  } else if (type === 'failed' || type === 'cancelled') {
    show(type);
    show(data.error?.message ?? type, true);
    return true;
  }
  return false;
}

function addToGallery(result, body) {
  for (const src of result.images) {
    const fig = document.createElement('figure');
    const img = Object.assign(document.createElement('img'), { src, alt: body.prompt });
    const cap = Object.assign(document.createElement('figcaption'), { textContent: `seed ${result.seed}: ${body.prompt.slice(0, 40)}` });
    fig.append(img, cap);
    fig.addEventListener('click', () => {
      $('output').src = src;
      $('output').hidden = false;
      $('meta').textContent = `seed ${result.seed} · ${body.prompt}`;
    });
    $('gallery').prepend(fig);
  }
}

async function cancel() {
  if (!state.job) return;
  await fetch(`/v1/inference/requests/${state.job}`, { method: 'DELETE', headers: headers() });
}

async function copyCurl() {
  const text = $('curl').textContent;
  try {
    await navigator.clipboard.writeText(text);
    $('copy-curl').textContent = 'Copied';
  } catch {
    getSelection().selectAllChildren($('curl')); // no clipboard access: select it for Ctrl-C
    $('copy-curl').textContent = 'Selected: press Ctrl-C';
  }
}

$('form').addEventListener('submit', submit);
$('cancel').addEventListener('click', cancel);
$('copy-curl').addEventListener('click', copyCurl);
init().catch((e) => show(`cannot reach the server: ${e.message}`, true));
