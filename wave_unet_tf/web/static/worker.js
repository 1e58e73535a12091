// Runs the models with LiteRT.js off the page's thread, one request at a time, in the order they came.
//   init   {threads}            loads LiteRT.js (threaded where the page is cross-origin isolated) and both models
//   window {mix}                one window of the fixed-window model: {source: Float32Array [outputFrames * channels]}
//   reset  {}                   starts a new stream (its states primed with the padding zeros)
//   push   {block}              one block of blockFrames frames in, {source: the same number of frames} out
// Audio is interleaved frames x channels at the model's rate; the stream's states never leave this worker.
'use strict';

let litert = null, manifest = null, fixed = null, streamModel = null, stream = null;
let queue = Promise.resolve();

self.onmessage = (event) => {
  const {id, type} = event.data;
  queue = queue.then(async () => {
    try {
      const [result, transfer] = await handlers[type](event.data);
      self.postMessage({id, result}, transfer || []);
    } catch (error) {
      self.postMessage({id, error: String((error && error.message) || error)});
    }
  });
};

const handlers = {
  async init({base, threads}) {
    if (typeof WebAssembly !== 'object') throw new Error('this browser has no WebAssembly');
    const response = await fetch(new URL('manifest.json', base));
    if (!response.ok) throw new Error(`the model failed to load (manifest.json: HTTP ${response.status})`);
    manifest = await response.json();
    litert = await import(new URL('litert/litert.js', base).href);
    const wasm = new URL('litert/wasm/', base).href;
    let threaded = threads !== 1 && self.crossOriginIsolated === true;
    let note = threaded ? '' : 'single thread: the page is not cross-origin isolated (its host sends no ' +
        'Cross-Origin-Opener-Policy / Cross-Origin-Embedder-Policy headers)';
    if (threads === 1) note = 'single thread (asked for)';
    try {
      await load(wasm, threaded);
    } catch (error) {
      if (!threaded) throw error;
      threaded = false;
      note = `single thread: threads failed to start (${error.message || error})`;
      await load(wasm, false);
    }
    const count = threaded ? (threads || navigator.hardwareConcurrency || 1) : 1;
    const options = {accelerator: 'wasm', cpuOptions: {numThreads: count}};
    try {
      fixed = await litert.loadAndCompile(new URL(manifest.window.model, base).href, options);
      streamModel = await litert.loadAndCompile(new URL(manifest.stream.model, base).href, options);
    } catch (error) {
      throw new Error(`the model failed to load (${error.message || error})`);
    }
    return [{manifest, threads: count, note}];
  },

  async window({mix}) {
    const {inputFrames} = manifest.window;
    const input = new litert.Tensor(mix, [1, inputFrames, manifest.channels]);
    let outputs;
    try {
      outputs = await fixed.run({mix: input});
    } finally {
      input.delete();
    }
    return collect(outputs, manifest.sources);
  },

  async reset() {
    if (stream) for (const state of stream.states) state.delete();
    const {blockFrames, contextBefore, outputDelay, states} = manifest.stream;
    stream = {states: states.map(([, frames, features]) => new litert.Tensor(new Float32Array(frames * features),
                                                                              [1, frames, features]))};
    // The song is fed after contextBefore zeros: their whole blocks run now, the rest waits with the song.
    const primed = Math.floor(contextBefore / blockFrames) * blockFrames;
    const silence = new Float32Array(blockFrames * manifest.channels);
    for (let done = 0; done < primed; done += blockFrames) {
      const outputs = await step(silence);
      for (const source of manifest.sources) outputs[source].delete();
    }
    stream.pending = new Float32Array((contextBefore - primed) * manifest.channels);  // interleaved
    stream.discard = outputDelay - primed;  // stream frames before the song's first sample
    stream.ready = Object.fromEntries(manifest.sources.map((s) => [s, []]));  // interleaved pieces
    stream.readyFrames = 0;
    stream.framesIn = 0;
    stream.framesOut = 0;
    return [{}];
  },

  async push({block}) {
    const {blockFrames, latencyFrames} = manifest.stream;
    const channels = manifest.channels;
    if (!stream) await handlers.reset();
    if (block.length !== blockFrames * channels) {
      throw new Error(`push: ${block.length / channels} frames; the stream takes blocks of ${blockFrames}`);
    }
    stream.framesIn += blockFrames;
    let pending = concat([stream.pending, block]);
    while (pending.length >= blockFrames * channels) {
      const outputs = await step(pending.subarray(0, blockFrames * channels));
      pending = pending.slice(blockFrames * channels);
      const skip = Math.min(stream.discard, blockFrames);
      stream.discard -= skip;
      for (const source of manifest.sources) {
        const data = outputs[source].toTypedArray();
        outputs[source].delete();
        if (skip < blockFrames) stream.ready[source].push(data.subarray(skip * channels));
      }
      if (skip < blockFrames) stream.readyFrames += blockFrames - skip;
    }
    stream.pending = pending;
    // Every push returns blockFrames frames: song sample t - latencyFrames with input sample t (zeros before).
    const due = Math.max(0, stream.framesIn - latencyFrames) - stream.framesOut;
    const count = Math.min(due, stream.readyFrames);
    const lead = blockFrames - count;  // the zeros before the song's first sample
    const result = {};
    const transfer = [];
    for (const source of manifest.sources) {
      const out = new Float32Array(blockFrames * channels);
      let at = lead * channels;
      const ready = stream.ready[source];
      while (at < out.length) {
        const piece = ready.shift();
        const take = Math.min(piece.length, out.length - at);
        out.set(piece.subarray(0, take), at);
        if (take < piece.length) ready.unshift(piece.subarray(take));
        at += take;
      }
      result[source] = out;
      transfer.push(out.buffer);
    }
    stream.readyFrames -= count;
    stream.framesOut += count;
    return [result, transfer];
  },
};

async function load(wasm, threaded) {
  // The runtime's loader reads self.Module: where its .wasm lies, and the script its thread workers start
  // (by default they would start this worker's own script).
  self.Module = {locateFile: (path) => wasm + path};
  if (threaded) self.Module.mainScriptUrlOrBlob = wasm + 'litert_wasm_threaded_internal.js';
  await litert.loadLiteRt(wasm, {threads: threaded});
}

async function step(mix) {
  const {blockFrames, states} = manifest.stream;
  const inputs = {mix: new litert.Tensor(mix.slice(), [1, blockFrames, manifest.channels])};
  states.forEach(([name], k) => { inputs[name] = stream.states[k]; });
  let outputs;
  try {
    outputs = await streamModel.run(inputs);
  } finally {
    inputs.mix.delete();
  }
  // The next states stay in LiteRT's memory and go straight back in with the next block.
  states.forEach(([name], k) => {
    stream.states[k].delete();
    stream.states[k] = outputs['next_' + name];
  });
  return outputs;
}

function collect(outputs, sources) {
  const result = {};
  const transfer = [];
  for (const [name, tensor] of Object.entries(outputs)) {
    if (sources.includes(name)) {
      result[name] = tensor.toTypedArray();
      transfer.push(result[name].buffer);
    }
    tensor.delete();
  }
  return [result, transfer];
}

function concat(parts) {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
