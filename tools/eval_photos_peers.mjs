// Peers for `make eval-photos`: @vladmandic/face-api (SSD MobileNet v1 + expression net) and
// @vladmandic/human (BlazeFace + emotion) on the same photos, tfjs WASM backend on one thread.
// Their model weights ship inside the npm packages; photos are decoded by tools/eval_photos.py
// --dump-rgb DIR (upright RGB, EXIF applied) so both see emote's pixels.
//   npm install --prefix build/peers @vladmandic/face-api @vladmandic/human \
//       @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
//   NODE_PATH=build/peers/node_modules node tools/eval_photos_peers.mjs RGBDIR OUTDIR
// Writes OUTDIR/face-api.jsonl and OUTDIR/human.jsonl (path, box [x,y,w,h], face_score, label)
// and OUTDIR/<peer>.seconds (wall time of detection + classification, decoding excluded).
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';

const require = createRequire(path.resolve(process.env.NODE_PATH || 'build/peers/node_modules', 'x.js'));
const [rgbDir, outDir] = process.argv.slice(2);
const mods = path.resolve(process.env.NODE_PATH || 'build/peers/node_modules');
const names = fs.readdirSync(rgbDir).filter((f) => f.endsWith('.rgb')).sort();
const photos = names.map((f) => {
  const m = f.match(/^(.*)\.(\d+)x(\d+)\.rgb$/);
  return { name: m[1], w: +m[2], h: +m[3], file: path.join(rgbDir, f) };
});
fs.mkdirSync(outDir, { recursive: true });
const faceApiLabels = { angry: 'angry', disgusted: 'disgust', fearful: 'fear', happy: 'happy', sad: 'sad', surprised: 'surprise', neutral: 'neutral' };

async function runFaceApi() {
  const faceapi = require(path.join(mods, '@vladmandic/face-api/dist/face-api.node-wasm.js'));
  await faceapi.tf.setBackend('wasm');
  await faceapi.tf.ready();
  const dir = path.join(mods, '@vladmandic/face-api/model');
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(dir);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(dir);
  await faceapi.nets.faceExpressionNet.loadFromDisk(dir);
  const out = [];
  const t0 = process.hrtime.bigint();
  for (const p of photos) {
    const t = faceapi.tf.tensor3d(new Uint8Array(fs.readFileSync(p.file)), [p.h, p.w, 3], 'int32');
    const res = await faceapi.detectAllFaces(t, new faceapi.SsdMobilenetv1Options({ minConfidence: 0.2, maxResults: 200 }))
      .withFaceLandmarks().withFaceExpressions();
    t.dispose();
    if (!res.length) out.push({ path: p.name, error: 'no face found' });
    for (const r of res) {
      const b = r.detection.box;
      const [best] = Object.entries(r.expressions).sort((a, c) => c[1] - a[1]);
      out.push({ path: p.name, box: [b.x, b.y, b.width, b.height], face_score: r.detection.score, label: faceApiLabels[best[0]] });
    }
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  fs.writeFileSync(path.join(outDir, 'face-api.jsonl'), out.map((r) => JSON.stringify(r)).join('\n') + '\n');
  fs.writeFileSync(path.join(outDir, 'face-api.seconds'), `${s}\n`);
  console.log(`face-api: ${photos.length} photos in ${s.toFixed(2)} s`);
}

async function runHuman() {
  // Node's fetch has no file:// scheme; human's WASM build loads its models through fetch.
  const netFetch = globalThis.fetch;
  globalThis.fetch = async (url, opts) => {
    const u = typeof url === 'string' ? url : url.url;
    if (u.startsWith('file://')) return new Response(fs.readFileSync(new URL(u)));
    return netFetch(url, opts);
  };
  const H = require(path.join(mods, '@vladmandic/human/dist/human.node-wasm.js'));
  const human = new H.Human({
    backend: 'wasm', modelBasePath: 'file://' + path.join(mods, '@vladmandic/human/models/'),
    wasmPath: 'file://' + path.join(mods, '@tensorflow/tfjs-backend-wasm/dist/'),
    debug: false, async: false, filter: { enabled: false },
    face: { enabled: true, detector: { rotation: true, maxDetected: 200, minConfidence: 0.2, return: false },
      mesh: { enabled: true }, iris: { enabled: false }, description: { enabled: false }, emotion: { enabled: true },
      antispoof: { enabled: false }, liveness: { enabled: false } },
    body: { enabled: false }, hand: { enabled: false }, object: { enabled: false }, gesture: { enabled: false },
    segmentation: { enabled: false },
  });
  await human.load();
  const out = [];
  const t0 = process.hrtime.bigint();
  for (const p of photos) {
    const t = human.tf.tensor4d(new Uint8Array(fs.readFileSync(p.file)), [1, p.h, p.w, 3], 'int32');
    const res = await human.detect(t);
    human.tf.dispose(t);
    if (!res.face.length) out.push({ path: p.name, error: 'no face found' });
    for (const f of res.face) {
      const e = (f.emotion || []).slice().sort((a, c) => c.score - a.score)[0];
      out.push({ path: p.name, box: f.box, face_score: f.boxScore ?? f.score, label: e ? e.emotion : null });
    }
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  fs.writeFileSync(path.join(outDir, 'human.jsonl'), out.map((r) => JSON.stringify(r)).join('\n') + '\n');
  fs.writeFileSync(path.join(outDir, 'human.seconds'), `${s}\n`);
  console.log(`human: ${photos.length} photos in ${s.toFixed(2)} s`);
}

const only = process.argv[4]; // optional: face-api or human
if (!only || only === 'face-api') await runFaceApi();
if (!only || only === 'human') await runHuman();
