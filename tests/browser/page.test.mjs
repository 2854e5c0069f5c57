// The web page, driven in real Chromium against a real `tkr-embed serve`
// with the tiny fixture model: uploads, text / image / video-frame / PDF-page
// queries, "more like this", the detail view, a corrupt upload, API keys.
// Run by tests/browser/run.sh (which builds the binary and the demo corpus).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const root = path.resolve(import.meta.dirname, "../..");
const bin = process.env.TKR_BIN || path.join(root, "target/debug/tkr-embed");
const model = path.join(root, "tests/fixtures/qwen2vl-tiny/model");
const demo = path.join(root, "data/demo/files");
const shots = process.env.SCREENSHOT_DIR || path.join(root, "target/browser-screenshots");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "tkr-browser-"));
const dataDir = path.join(work, "db");
const KEY = "page-test-key";

let browser;
let server = null;

// ------------------------------------------------------------------ server

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startServer(env = {}) {
  const port = await freePort();
  const log = fs.openSync(path.join(work, `server-${port}.log`), "w");
  const child = spawn(bin, ["--model", model, "--data-dir", dataDir, "serve", "--port", String(port)], {
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdio: ["ignore", log, log],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 120; i++) {
    if (child.exitCode !== null) break;
    try {
      if ((await fetch(`${base}/health`)).ok) return { child, base, port, logPath: path.join(work, `server-${port}.log`) };
    } catch (_) { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the server did not start:\n${fs.readFileSync(path.join(work, `server-${port}.log`), "utf8")}`);
}

async function stopServer() {
  if (!server) return;
  const { child, logPath } = server;
  server = null;
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }
  const logText = fs.readFileSync(logPath, "utf8");
  assert.doesNotMatch(logText, /panicked| ERROR /, `the server logged errors:\n${logText}`);
}

// ------------------------------------------------------------------- pages

// A fresh page that records console errors; `allowed` lists HTTP statuses
// whose "Failed to load resource" messages a step expects (a refused
// upload, a 401 before the key is given).
async function openPage(base, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.consoleErrors = [];
  page.allowed = new Set();
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const status = /status of (\d{3})/.exec(message.text());
    if (status && page.allowed.has(Number(status[1]))) return;
    page.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => page.consoleErrors.push(`uncaught: ${error.message}`));
  await page.goto(base + "/");
  return page;
}

async function closePage(page) {
  assert.deepEqual(page.consoleErrors, [], "no console errors");
  await page.context().close();
}

const hits = (page) => page.locator('[data-testid="hit"]');

async function searchWith(page, { text = "", image = null }) {
  await page.getByTestId("search-input").fill(text);
  if (image) await page.getByTestId("image-query").setInputFiles(image);
  else if (await page.locator("#image-clear").isVisible()) await page.locator("#image-clear").click();
  const status = page.locator("#search-status");
  await page.getByTestId("search-input").press("Enter");
  await status.filter({ hasText: /results in|Nothing found/ }).waitFor();
}

async function firstHit(page) {
  const card = hits(page).first();
  return {
    card,
    id: await card.getAttribute("data-doc-id"),
    segment: JSON.parse((await card.getAttribute("data-segment")) || "null"),
  };
}

function shot(page, name) {
  return page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

// ------------------------------------------------------------------- setup

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  for (const f of ["mandelbrot.png", "test-card.png", "four-scenes.mp4", "field-guide.pdf"]) {
    assert.ok(fs.existsSync(path.join(demo, f)), `${f} missing: run data/demo/make.sh`);
  }
  // Query pictures made the way the server makes its own: the video's frame
  // at the middle of segment 6 of 16 (1.875–2.25 s), and page 2 of the PDF
  // rendered at processing.pdf_render_max_side (1600).
  execFileSync("ffmpeg", ["-v", "error", "-y", "-ss", "2.0625", "-i", path.join(demo, "four-scenes.mp4"),
    "-frames:v", "1", path.join(work, "frame.png")]);
  execFileSync("pdftoppm", ["-png", "-singlefile", "-f", "2", "-l", "2", "-scale-to", "1600",
    path.join(demo, "field-guide.pdf"), path.join(work, "page2")]);
  const corrupt = Buffer.concat([Buffer.from("89504e470d0a1a0a", "hex"), Buffer.from("not the rest of a PNG ".repeat(20))]);
  fs.writeFileSync(path.join(work, "broken.png"), corrupt);

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  server = await startServer();
});

after(async () => {
  await browser?.close();
  await stopServer();
  fs.rmSync(work, { recursive: true, force: true });
});

// -------------------------------------------------------------------- tests

const ids = {};

test("create a collection and upload files through the page", async () => {
  const page = await openPage(server.base);
  // No collections yet: the page opens on the collections tab.
  await page.locator("#collections-empty").waitFor();
  await page.locator("#new-name").fill("demo");
  await page.locator("#new-text-fields").fill("title");
  await page.getByRole("button", { name: "Create" }).click();
  await page.locator('tr[data-collection="demo"]').waitFor();

  const files = ["mandelbrot.png", "test-card.png", "four-scenes.mp4", "field-guide.pdf"];
  await page.getByTestId("upload").setInputFiles(files.map((f) => path.join(demo, f)));
  for (const f of files) {
    const row = page.locator(`li[data-file="${f}"]`);
    await row.locator(".status", { hasText: "stored as" }).waitFor({ timeout: 120_000 });
    ids[f] = /stored as (\S+) /.exec(await row.locator(".status").textContent())[1];
  }
  await page.locator('tr[data-collection="demo"] td:nth-child(2)', { hasText: "4" }).waitFor();

  // A corrupt picture: the server's message on the page, nothing stored.
  page.allowed.add(400);
  await page.getByTestId("upload").setInputFiles(path.join(work, "broken.png"));
  const failed = page.locator('li.failed[data-file="broken.png"] .status');
  await failed.waitFor();
  const message = await failed.textContent();
  assert.match(message, /image|decode|PNG|format/i, message);
  page.allowed.delete(400);
  const collection = await (await fetch(`${server.base}/collections/demo`)).json();
  assert.equal(collection.documents, 4, "the corrupt upload stored nothing");
  await shot(page, "collections");
  await closePage(page);
});

test("text search shows result cards", async () => {
  const page = await openPage(server.base);
  await page.getByTestId("collection-select").selectOption("demo");
  await searchWith(page, { text: "a red circle" });
  assert.ok((await hits(page).count()) >= 1);
  const score = Number(await hits(page).first().getAttribute("data-score"));
  assert.ok(Number.isFinite(score));
  await closePage(page);
});

test("an uploaded image as query finds that image first", async () => {
  const page = await openPage(server.base);
  await searchWith(page, { image: path.join(demo, "mandelbrot.png") });
  const top = await firstHit(page);
  assert.equal(top.id, ids["mandelbrot.png"]);
  // Its picture loaded (the thumbnail route).
  await top.card.locator("img").evaluate((img) => img.decode());
  assert.ok(await top.card.locator("img").evaluate((img) => img.naturalWidth > 0));
  await shot(page, "image-query");
  await closePage(page);
});

test("an image dropped on the page is the query", async () => {
  const page = await openPage(server.base);
  const png = fs.readFileSync(path.join(demo, "test-card.png")).toString("base64");
  await page.evaluate((data) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
    document.querySelector("#image-drop").dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, png);
  await page.locator("#image-preview").waitFor();
  await page.locator('#search-form button[type="submit"]').click();
  await page.locator("#search-status", { hasText: "results in" }).waitFor();
  assert.equal((await firstHit(page)).id, ids["test-card.png"]);
  await closePage(page);
});

test("a video frame as query plays the video from the matching segment", async () => {
  const page = await openPage(server.base);
  await searchWith(page, { image: path.join(work, "frame.png") });
  const top = await firstHit(page);
  assert.equal(top.id, ids["four-scenes.mp4"]);
  assert.equal(top.segment.start_s, 1.875);
  assert.equal(top.segment.end_s, 2.25);
  const video = top.card.locator("video");
  assert.match(await video.getAttribute("src"), /#t=1\.875,2\.25$/);
  await page.waitForFunction(
    (v) => v.readyState >= 1 && Math.abs(v.currentTime - 1.875) < 0.15,
    await video.elementHandle(),
    { timeout: 30_000 },
  );
  // Browsers seek with Range requests: the content route answers 206.
  const partial = await page.evaluate(async (url) => {
    const r = await fetch(url, { headers: { Range: "bytes=0-99" } });
    return { status: r.status, range: r.headers.get("content-range"), bytes: (await r.arrayBuffer()).byteLength };
  }, (await video.getAttribute("src")).split("#")[0]);
  assert.equal(partial.status, 206);
  assert.equal(partial.bytes, 100);
  assert.match(partial.range, /^bytes 0-99\/\d+$/);

  // The detail view: a strip of segment frames with their times.
  await top.card.getByTestId("details").click();
  const strip = page.locator("#detail .strip img");
  await strip.first().waitFor();
  assert.equal(await strip.count(), 16);
  await page.waitForFunction(() => [...document.querySelectorAll("#detail .strip img")]
    .every((img) => img.complete && img.naturalWidth > 0));
  await shot(page, "video-detail");
  await page.keyboard.press("Escape");
  await closePage(page);
});

test("a PDF page as query shows that page's picture", async () => {
  const page = await openPage(server.base);
  await searchWith(page, { image: path.join(work, "page2.png") });
  const top = await firstHit(page);
  assert.equal(top.id, ids["field-guide.pdf"]);
  assert.deepEqual(top.segment, { page: 2 });
  const img = top.card.locator("img");
  assert.equal(await img.getAttribute("alt"), `Page 2 of ${top.id}`);
  await page.waitForFunction((i) => i.complete && i.naturalWidth > 0, await img.elementHandle());
  await shot(page, "pdf-query");

  // "More like this": search by the stored document, which is left out.
  await top.card.getByTestId("more-like-this").click();
  await page.waitForFunction((id) => {
    const cards = [...document.querySelectorAll('[data-testid="hit"]')];
    return cards.length > 0 && cards.every((c) => c.dataset.docId !== id);
  }, top.id);
  await closePage(page);
});

test("a large collection is browsed a page at a time", async () => {
  // 60 documents with stored vectors (no model work), listed 48 at a time.
  await fetch(`${server.base}/collections`, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: "many" }) });
  for (let i = 0; i < 60; i++) {
    const vector = Array.from({ length: 64 }, (_, j) => (j === i % 64 ? 1 : 0.01));
    const r = await fetch(`${server.base}/collections/many/documents`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: `note-${String(i).padStart(2, "0")}`, text: `note number ${i}`, vector }),
    });
    assert.equal(r.status, 201);
  }
  const page = await openPage(server.base);
  await page.getByTestId("collection-select").selectOption("many");
  await page.getByTestId("browse").click();
  const cards = page.locator('[data-testid="document"]');
  await page.locator("#search-status", { hasText: "the first 48" }).waitFor();
  assert.equal(await cards.count(), 48);
  assert.equal(await cards.first().getAttribute("data-doc-id"), "note-00");
  await page.getByRole("button", { name: "Show more" }).click();
  await page.locator("#search-status", { hasText: "all of them" }).waitFor();
  assert.equal(await cards.count(), 60);
  assert.equal(await cards.last().getAttribute("data-doc-id"), "note-59");
  assert.ok(await page.locator("#more").isHidden());
  // Switching collections while browsing lists the other one.
  await page.getByTestId("collection-select").selectOption("demo");
  await page.locator("#search-status", { hasText: "demo: the first 4" }).waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="document"] img')]
    .every((img) => img.complete && img.naturalWidth > 0));
  await shot(page, "browse");
  await closePage(page);
});

test("the page fits a phone's width", async () => {
  const page = await openPage(server.base, { width: 390, height: 844 });
  await searchWith(page, { text: "colour bars" });
  const wide = await page.evaluate(() => [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
    .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className} (${Math.round(e.getBoundingClientRect().right)}px)`));
  assert.deepEqual(wide, [], `wider than the ${390}px screen`);
  await shot(page, "phone");
  // Dark colours follow the system.
  await page.emulateMedia({ colorScheme: "dark" });
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(background, "rgb(20, 20, 24)");
  await shot(page, "phone-dark");
  await closePage(page);
});

test("with an API key configured, the page asks for it and then works", async () => {
  await stopServer();
  server = await startServer({ TKR_API_KEYS: KEY });
  const page = await openPage(server.base);
  page.allowed.add(401);
  const prompt = page.getByTestId("api-key");
  await prompt.waitFor();
  await shot(page, "api-key");
  // A wrong key is refused and asked for again.
  await prompt.fill("wrong");
  await prompt.press("Enter");
  await page.locator("#key-error", { hasText: "refused" }).waitFor();
  await prompt.fill(KEY);
  await prompt.press("Enter");
  await page.locator('[data-testid="collection-select"] option[value="demo"]').waitFor({ state: "attached" });
  page.allowed.delete(401);

  await page.getByTestId("collection-select").selectOption("demo");
  await searchWith(page, { image: path.join(demo, "test-card.png") });
  const top = await firstHit(page);
  assert.equal(top.id, ids["test-card.png"]);
  // Pictures come through the key too (fetched, shown from blob: URLs).
  const img = top.card.locator("img");
  assert.match(await img.getAttribute("src"), /^blob:/);
  await page.waitForFunction((i) => i.complete && i.naturalWidth > 0, await img.elementHandle());
  await closePage(page);
});
