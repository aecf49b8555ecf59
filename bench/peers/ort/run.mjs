// ONNX Runtime peer harness (npm onnxruntime-node, installed by install.sh).
//
//   node run.mjs --model m.onnx --input x.npy [--input ...] --output y.npy [--output ...]
//   node run.mjs --model m.onnx --input x.npy --bench 200 [--threads 1]
//   node run.mjs --self-test
//   node run.mjs --model m.onnx --input x.npy --output y.npy --save-optimized opt.onnx
//
// Inputs and outputs are .npy files in the model's input / output order (or NAME=FILE.npy).
// Sessions use graphOptimizationLevel 'all', one inter-op thread and --threads intra-op threads
// (default 1). --bench N times N runs after N/10 (at least 5) warm-up runs and prints one JSON
// line: median / p99 / min in ms, and the same for an Identity model over the same inputs (the
// harness's own cost: feeding tensors in and out of the session; an upper bound, as Identity
// copies an input-sized output back to JavaScript where a classifier returns a few logits).
// --save-optimized FILE writes the graph ONNX Runtime runs after its optimizations (e.g. the
// QLinearConv / QGemm it fused from a QDQ model). --ort DIR (or $KILN_ORT_DIR)
// is the npm prefix holding node_modules/onnxruntime-node (default build/peers/ort). Exit code
// 77 when the package is absent (CTest's skip), 1 on any error.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const a = { inputs: [], outputs: [], threads: 1, bench: 0, selfTest: false, model: null,
              saveOptimized: null,
              ort: process.env.KILN_ORT_DIR || path.join(here, '..', '..', '..', 'build', 'peers', 'ort') };
  for (let i = 0; i < argv.length; ++i) {
    const k = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
      return argv[++i];
    };
    if (k === '--model') a.model = next();
    else if (k === '--input') a.inputs.push(next());
    else if (k === '--output') a.outputs.push(next());
    else if (k === '--threads') a.threads = parseInt(next(), 10);
    else if (k === '--bench') a.bench = parseInt(next(), 10);
    else if (k === '--ort') a.ort = next();
    else if (k === '--self-test') a.selfTest = true;
    else if (k === '--save-optimized') a.saveOptimized = next();
    else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

function loadOrt(dir) {
  const require = createRequire(path.join(path.resolve(dir), 'node_modules', 'x.js'));
  try {
    return require('onnxruntime-node');
  } catch (e) {
    console.error(`run.mjs: onnxruntime-node not found under ${dir}/node_modules ` +
                  `(run bench/peers/ort/install.sh ${dir}): ${e.message.split('\n')[0]}`);
    process.exit(77);
  }
}

// ---- .npy (versions 1-3, little-endian, C order) -------------------------------------------

const kNpyTypes = {
  '<f4': ['float32', Float32Array], '<f8': ['float64', Float64Array],
  '<i4': ['int32', Int32Array], '<i8': ['int64', BigInt64Array],
  '|i1': ['int8', Int8Array], '|u1': ['uint8', Uint8Array], '|b1': ['bool', Uint8Array],
};

function readNpy(ort, file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY') {
    throw new Error(`${file}: not a .npy file`);
  }
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new Error(`${file}: bad .npy header`);
  if (fortran === 'True') throw new Error(`${file}: Fortran order is not supported`);
  const type = kNpyTypes[descr];
  if (!type) throw new Error(`${file}: dtype ${descr} is not supported`);
  const dims = shapeText.split(',').map(s => s.trim()).filter(s => s).map(Number);
  const n = dims.reduce((x, y) => x * y, 1);
  const bytes = buf.subarray(start + hlen);
  const Ctor = type[1];
  if (bytes.length !== n * Ctor.BYTES_PER_ELEMENT) throw new Error(`${file}: data size mismatch`);
  const copy = new Uint8Array(bytes);  // aligned
  let data = new Ctor(copy.buffer, 0, n);
  if (type[0] === 'bool') data = Uint8Array.from(data);
  return new ort.Tensor(type[0], data, dims);
}

function writeNpy(file, tensor) {
  const descr = Object.entries(kNpyTypes).find(([, t]) => t[0] === tensor.type)?.[0];
  if (!descr) throw new Error(`output dtype ${tensor.type} has no .npy writer`);
  const dims = tensor.dims;
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const d = tensor.data;
  const body = Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  const tmp = `${file}.tmp${process.pid}`;
  fs.writeFileSync(tmp, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
  fs.renameSync(tmp, file);
}

// ---- an Identity model, protobuf written by hand (the harness's cost in --bench) ------------

function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return Buffer.from(out);
}
const field = (num, payload) => Buffer.concat([varint((num << 3) | 2), varint(payload.length), payload]);
const fieldInt = (num, v) => Buffer.concat([varint(num << 3), varint(v)]);
const str = s => Buffer.from(s, 'utf8');

const kOnnxTypes = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float64: 11 };

function identityModel(tensors) {
  const valueInfo = (name, t) => {
    const shape = Buffer.concat(t.dims.map(d => field(1, fieldInt(1, d))));
    const tensorType = Buffer.concat([fieldInt(1, kOnnxTypes[t.type]), field(2, shape)]);
    return Buffer.concat([field(1, str(name)), field(2, field(1, tensorType))]);
  };
  const parts = [];
  tensors.forEach((t, k) => {
    parts.push(field(1, Buffer.concat([field(1, str(`x${k}`)), field(2, str(`y${k}`)),
                                       field(3, str(`identity${k}`)), field(4, str('Identity'))])));
  });
  parts.push(field(2, str('identity')));
  tensors.forEach((t, k) => parts.push(field(11, valueInfo(`x${k}`, t))));
  tensors.forEach((t, k) => parts.push(field(12, valueInfo(`y${k}`, t))));
  const graph = Buffer.concat(parts);
  const opset = Buffer.concat([field(1, str('')), fieldInt(2, 13)]);
  return Buffer.concat([fieldInt(1, 7), field(2, str('kiln-ort-harness')), field(7, graph), field(8, opset)]);
}

// ---- running -------------------------------------------------------------------------------

function sessionOptions(threads) {
  return { graphOptimizationLevel: 'all', executionMode: 'sequential', intraOpNumThreads: threads,
           interOpNumThreads: 1 };
}

// Pairs files with names: NAME=FILE by name, the other files in declared order over the names
// left.
function bind(names, files, what) {
  if (files.length !== names.length) {
    throw new Error(`the model has ${names.length} ${what}s (${names.join(', ')}), got ${files.length} files`);
  }
  const named = new Map(), positional = [];
  for (const f of files) {
    const eq = f.indexOf('=');
    const name = eq > 0 ? f.slice(0, eq) : null;
    if (name !== null && names.includes(name)) {
      if (named.has(name)) throw new Error(`${what} ${name} is given twice`);
      named.set(name, f.slice(eq + 1));
    } else {
      positional.push(f);
    }
  }
  return names.map(n => [n, named.has(n) ? named.get(n) : positional.shift()]);
}

async function time(session, feeds, runs) {
  const warm = Math.max(5, Math.floor(runs / 10));
  for (let k = 0; k < warm; ++k) await session.run(feeds);
  const t = [];
  for (let k = 0; k < runs; ++k) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  t.sort((a, b) => a - b);
  const q = p => t[Math.min(t.length - 1, Math.ceil(p * t.length) - 1)];
  return { median_ms: q(0.5), p99_ms: q(0.99), min_ms: t[0] };
}

async function selfTest(ort) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-ort-'));
  try {
    const x = new ort.Tensor('float32', Float32Array.from([1.5, -2, 3.25, 0, 7, -8]), [2, 3]);
    writeNpy(path.join(dir, 'x.npy'), x);
    const back = readNpy(ort, path.join(dir, 'x.npy'));
    const s = await ort.InferenceSession.create(identityModel([back]), sessionOptions(1));
    const out = await s.run({ x0: back });
    writeNpy(path.join(dir, 'y.npy'), out.y0);
    const y = readNpy(ort, path.join(dir, 'y.npy'));
    const same = y.dims.join() === x.dims.join() && y.data.every((v, k) => v === x.data[k]);
    if (!same) throw new Error(`self-test: Identity gave ${Array.from(y.data)} for ${Array.from(x.data)}`);
    console.log(`run.mjs self-test passed (onnxruntime-node ${ort.env?.versions?.common ?? ''})`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const ort = loadOrt(a.ort);
  if (a.selfTest) return selfTest(ort);
  if (!a.model) throw new Error('--model is required');
  const options = sessionOptions(a.threads);
  if (a.saveOptimized) options.optimizedModelFilePath = a.saveOptimized;
  const session = await ort.InferenceSession.create(a.model, options);
  const feeds = {};
  for (const [name, file] of bind(session.inputNames, a.inputs, 'input')) feeds[name] = readNpy(ort, file);
  if (a.bench > 0) {
    const model = await time(session, feeds, a.bench);
    const tensors = session.inputNames.map(n => feeds[n]);
    const id = await ort.InferenceSession.create(identityModel(tensors), sessionOptions(a.threads));
    const idFeeds = Object.fromEntries(tensors.map((t, k) => [`x${k}`, t]));
    const harness = await time(id, idFeeds, a.bench);
    console.log(JSON.stringify({ model: path.basename(a.model), threads: a.threads, runs: a.bench,
                                 ...model, identity: harness }));
  }
  if (a.outputs.length > 0 || a.bench === 0) {
    const results = await session.run(feeds);
    for (const [name, file] of bind(session.outputNames, a.outputs, 'output')) writeNpy(file, results[name]);
  }
}

main().catch(e => {
  console.error(`run.mjs: ${e.message}`);
  process.exit(1);
});
