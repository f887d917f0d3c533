// bench_ort: ONNX Runtime (npm onnxruntime-node, CPU) peer for tools/bench.py; prints JSON.
//
//   node tools/bench_ort.mjs ORT_DIR check MODEL.onnx INPUTS.f32 C H W COUNT THREADS PROBS_OUT.f32
//   node tools/bench_ort.mjs ORT_DIR time  MODEL.onnx INPUTS.f32 C H W BATCH THREADS SECONDS
//
// ORT_DIR holds node_modules/onnxruntime-node (tools/bench.py installs it into build/bench/ort).
// The model takes "input" [N,C,H,W] and returns "probs" [N,classes]. Sessions use
// intraOpNumThreads = THREADS, interOpNumThreads = 1, sequential execution and every graph
// optimisation. time: warms up, then runs the first BATCH images until SECONDS have passed
// (at least 5 runs), awaiting each run as a caller would; same method as bench_engine.c.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const usage = 'usage: bench_ort.mjs ORT_DIR (check|time) MODEL.onnx INPUTS.f32 C H W N THREADS (PROBS_OUT|SECONDS)';
const [ortDir, cmd, modelPath, inputsPath, c, h, w, n, threads, last] = process.argv.slice(2);
if (!last || (cmd !== 'check' && cmd !== 'time')) {
  console.error(usage);
  process.exit(2);
}
const require = createRequire(join(resolve(ortDir), 'package.json'));
const ort = require('onnxruntime-node');

const [C, H, W, N, T] = [c, h, w, n, threads].map((s) => {
  const v = Number.parseInt(s, 10);
  if (!(v >= 1)) {
    console.error(`bench_ort: bad integer '${s}'\n${usage}`);
    process.exit(2);
  }
  return v;
});

const floatsPerImage = C * H * W;
const bytes = readFileSync(inputsPath);
if (bytes.length < N * floatsPerImage * 4) {
  console.error(`bench_ort: ${inputsPath}: shorter than ${N} images`);
  process.exit(1);
}
const all = new Float32Array(bytes.buffer, bytes.byteOffset, N * floatsPerImage);
const input = new ort.Tensor('float32', Float32Array.from(all), [N, C, H, W]);

const session = await ort.InferenceSession.create(modelPath, {
  executionProviders: ['cpu'],
  intraOpNumThreads: T,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
});
const run = () => session.run({ input });
const now = () => Number(process.hrtime.bigint()) / 1e9;
const versions = ort.env.versions ?? {};

if (cmd === 'check') {
  const out = await run();
  const probs = out.probs.data;
  writeFileSync(last, Buffer.from(probs.buffer, probs.byteOffset, probs.byteLength));
  console.log(JSON.stringify({ count: N, threads: T, classes: out.probs.dims[1], ort_version: versions.common ?? null }));
} else {
  const seconds = Number.parseFloat(last);
  const warmStart = now();
  for (let i = 0; i < 2 || now() - warmStart < 0.25; i++) await run();
  const times = [];
  const start = now();
  let total = 0;
  do {
    const t0 = now();
    await run();
    const t1 = now();
    times.push(t1 - t0);
    total = t1 - start;
  } while (times.length < 5 || total < seconds);
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  const median = times.length % 2 ? times[mid] : 0.5 * (times[mid - 1] + times[mid]);
  console.log(JSON.stringify({
    batch: N, threads: T, calls: times.length, seconds: total,
    images_per_s: (times.length * N) / total,
    ms_per_batch_median: median * 1e3, ms_per_batch_min: times[0] * 1e3,
    ort_version: versions.common ?? null,
  }));
}
