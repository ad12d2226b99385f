/**
 * The web page (GET /) and the API docs (GET /docs) in a real headless Chromium (Debian's, driven by playwright-core),
 * against the server with the real tiny pipeline and a token: load the page, enter the token, generate (progress
 * from the step events), see the image and its seed, the "copy as curl" command, the gallery; then image-to-image
 * from an uploaded file. Screenshots are kept as test artifacts in test-artifacts/ (gitignored):
 * web-page.png and docs-page.png.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ThreadedGenerator, type FluxServer } from '../src/index.ts';
import { SCHNELL, TINY_MODEL, pngSize, postJson, start } from './helpers.ts';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = new URL('../../../test-artifacts/', import.meta.url).pathname;
const TOKEN = 'page-token';
const HAS_CHROMIUM = existsSync(CHROMIUM);

let server: FluxServer;
let url: string;
let browser: BrowserContext;
let profile: string;

beforeAll(async () => {
  if (!HAS_CHROMIUM) return;
  const gen = await ThreadedGenerator.open(TINY_MODEL);
  ({ server, url } = await start({ generators: [gen], tokens: [TOKEN] }));
  profile = mkdtempSync(join(tmpdir(), 'flux-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1000, height: 1100 },
  });
  mkdirSync(ARTIFACTS, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe.skipIf(!HAS_CHROMIUM)(`the web page in headless Chromium${HAS_CHROMIUM ? '' : ` (skipped: no ${CHROMIUM}; apt-get install chromium)`}`, () => {
  it('generates with live progress, shows the image, its seed, a curl of the same request and a gallery; then image-to-image', async () => {
    const page = await browser.newPage();
    const events: string[] = [];
    page.on('console', (m) => events.push(`console ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => events.push(`pageerror: ${e.message}`));
    await page.goto(url);
    // auth is on: the token field shows; a request without it is refused and says so
    await page.locator('#token-row').waitFor({ state: 'visible' });
    await page.locator('#width option[value="128"]').waitFor({ state: 'attached' }); // sizes from /openapi.json
    await page.fill('#prompt', 'a lighthouse at dusk');
    await page.selectOption('#width', '128');
    await page.selectOption('#height', '128');
    await page.fill('#steps', '6');
    await page.fill('#seed', '5');
    await page.click('#go');
    await expect.poll(() => page.textContent('#error')).toMatch(/bearer token|Authorization/);

    await page.fill('#token', TOKEN);
    await page.click('#go');
    await page.locator('#output').waitFor({ state: 'visible' });
    expect(await page.textContent('#state')).toBe('succeeded');
    expect(await page.getAttribute('#output', 'src')).toMatch(/^data:image\/png;base64,/);
    expect(await page.textContent('#meta')).toMatch(/^seed 5 /);
    // the bar followed the step events to the end
    expect(await page.$eval('#progress', (e) => [(e as unknown as { value: number }).value, (e as unknown as { max: number }).max])).toEqual([6, 6]);
    const curl = (await page.textContent('#curl'))!;
    expect(curl).toContain('curl -X POST');
    expect(curl).toContain('"prompt":"a lighthouse at dusk"');
    expect(curl).toContain('Authorization: bearer $TOKEN');
    expect(curl).not.toContain(TOKEN);
    expect(await page.locator('#gallery figure').count()).toBe(1);

    // the curl command is the same request: run it (as JSON through fetch) and get the same image
    const body = JSON.parse(/-d '([^']+)'/.exec(curl)![1]!);
    const again = await postJson(url + SCHNELL, body, { authorization: `Bearer ${TOKEN}` });
    expect(again.body.images[0]).toBe(await page.getAttribute('#output', 'src'));

    // image-to-image from an uploaded file
    const file = join(profile, 'input.png');
    writeFileSync(file, pngSize(again.body.images[0]).bytes);
    await page.setInputFiles('#image', file);
    await page.fill('#strength', '0.5');
    await page.click('#go');
    await expect.poll(() => page.locator('#gallery figure').count()).toBe(2);
    expect(await page.textContent('#curl')).toMatch(/-F 'image=@input\.png'/);
    await page.screenshot({ path: join(ARTIFACTS, 'web-page.png'), fullPage: true });
    expect(events.filter((e) => e.startsWith('pageerror') || e.includes('error'))).toEqual(events.filter((e) => e.includes('401'))); // no script errors (a 401 fetch is logged by Chromium)
    await page.close();
  });

  it('shows a step preview when the event stream carries one (the server sends none yet: the stream is stubbed here)', async () => {
    const page = await browser.newPage();
    const tiny = 'data:image/png;base64,' + Buffer.from(pngSize((await postJson(url + SCHNELL, { prompt: 'p', width: 128, height: 128, num_inference_steps: 1, seed: 1 }, { authorization: `Bearer ${TOKEN}` })).body.images[0]).bytes).toString('base64');
    await page.route('**/events', (route) =>
      route.fulfill({
        status: 200,
        headers: { 'content-type': 'text/event-stream' },
        body: `event: status\ndata: {"status":"running"}\n\nevent: step\ndata: {"step":1,"total_steps":4}\n\nevent: preview\ndata: ${JSON.stringify({ step: 1, image: tiny })}\n\n`,
      }),
    );
    await page.goto(url);
    await page.fill('#token', TOKEN);
    await page.fill('#prompt', 'a preview');
    await page.locator('#width option[value="128"]').waitFor({ state: 'attached' });
    await page.selectOption('#width', '128');
    await page.selectOption('#height', '128');
    await page.click('#go');
    await page.locator('#preview').waitFor({ state: 'visible' });
    expect(await page.getAttribute('#preview', 'src')).toBe(tiny);
    expect(await page.textContent('#state')).toBe('step 1 of 4');
    await page.close();
  });

  it('renders the API docs from /openapi.json and sends a call with the token', async () => {
    const page = await browser.newPage();
    await page.goto(`${url}/docs`);
    await expect.poll(() => page.locator('details.op').count()).toBeGreaterThan(8);
    const health = page.locator('details.op', { hasText: '/healthz' });
    await health.locator('summary').click();
    await health.locator('button', { hasText: 'Send' }).click();
    await expect.poll(() => health.locator('pre').textContent()).toMatch(/HTTP 200[\s\S]*"auth":true/);
    const models = page.locator('details.op', { hasText: '/v1/openai/models' });
    await models.locator('summary').click();
    await page.fill('#token', TOKEN);
    await models.locator('button', { hasText: 'Send' }).click();
    await expect.poll(() => models.locator('pre').textContent()).toMatch(/HTTP 200[\s\S]*FLUX-1-schnell/);
    await page.screenshot({ path: join(ARTIFACTS, 'docs-page.png'), fullPage: false });
    await page.close();
  });
});
