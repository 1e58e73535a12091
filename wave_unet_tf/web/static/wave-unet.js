// window.waveUNet: the model in this page, for the page itself, programs and tests.
//   ready                        a Promise, resolved once the models are loaded (rejected with the reason otherwise)
//   sourceNames, sampleRate      the model's sources and rate; channels, threads, note (how it runs), manifest
//   separate(channels, rate, {progress})  -> Promise of {source: channels} at the input's rate, length and channels
//   stream()                     -> {blockFrames, latencyFrames, push(channels), ready} at the model's rate
//                                (one stream at a time: a new one, e.g. the page's live mode, restarts it)
// Channels are arrays of Float32Array, one per channel.
//
// separate tiles the song exactly as the Python Separator does with a fixed window (the model's shift grid,
// zeros around the song, each window's kept outputs side by side), so at the model's rate it gives the
// Separator's samples; other rates go through resample.js (a windowed sinc) where the Separator uses soxr.

import {resample} from './resample.js';

const base = new URL('./', import.meta.url);

class WaveUNet {
  constructor() {
    this.worker = null;
    this.calls = new Map();
    this.nextId = 0;
    this.sourceNames = [];
    this.sampleRate = null;
    this.ready = this.start();
    this.ready.catch(() => {});  // said on the page; callers that await it see the reason
  }

  async start() {
    if (typeof WebAssembly !== 'object' || typeof Worker !== 'function') {
      throw new Error('this browser cannot run the model: it has no WebAssembly or no Web Workers');
    }
    this.worker = new Worker(new URL('worker.js', base));
    this.worker.onmessage = (event) => {
      const {id, result, error} = event.data;
      const call = this.calls.get(id);
      this.calls.delete(id);
      if (error !== undefined) call.reject(new Error(error));
      else call.resolve(result);
    };
    this.worker.onerror = (event) => {
      for (const call of this.calls.values()) call.reject(new Error(event.message || 'the model\'s worker failed'));
      this.calls.clear();
    };
    const threads = Number(new URLSearchParams(location.search).get('threads')) || 0;
    const {manifest, threads: count, note} = await this.call({type: 'init', base: base.href, threads});
    this.manifest = manifest;
    this.sourceNames = manifest.sources;
    this.sampleRate = manifest.sampleRate;
    this.channels = manifest.channels;
    this.threads = count;
    this.note = note;
    return this;
  }

  call(message, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, {resolve, reject});
      this.worker.postMessage({...message, id}, transfer);
    });
  }

  async separate(channels, sampleRate, {progress} = {}) {
    await this.ready;
    channels = checkChannels(channels, 'separate');
    if (!(sampleRate > 0)) throw new Error(`separate: sample rate ${sampleRate} must be positive`);
    const samples = channels[0].length;
    if (!channels.some((c) => c.some((x) => x !== 0))) {
      // Silence in, silence out (the model's biases would otherwise add a faint hum), as the Separator.
      if (progress) progress(1, 1);
      return Object.fromEntries(this.sourceNames.map((s) => [s, channels.map((c) => new Float32Array(c.length))]));
    }
    let mix = convertChannels(channels, this.channels);
    // A few samples at a high rate may resample to none at the model's: zeros keep one sample at least.
    const shortest = Math.ceil(2 * sampleRate / this.sampleRate);
    if (samples < shortest) mix = mix.map((c) => padTo(c, shortest));
    mix = resample(mix, sampleRate, this.sampleRate);
    const estimates = await this.separateAtModelRate(mix, progress);
    const result = {};
    for (const source of this.sourceNames) {
      const back = resample(estimates[source], this.sampleRate, sampleRate).map((c) => fitLength(c, samples));
      result[source] = convertChannels(back, channels.length);
    }
    return result;
  }

  // mix: this.channels Float32Arrays at the model's rate -> {source: channels} of the same length.
  async separateAtModelRate(mix, progress) {
    const {inputFrames, outputFrames, stride, contextBefore, keepOffset} = this.manifest.window;
    const C = this.channels;
    const frames = mix[0].length;
    const windows = Math.ceil(frames / stride);
    const estimates = Object.fromEntries(this.sourceNames.map((s) => [s, mix.map(() => new Float32Array(frames))]));
    for (let k = 0; k < windows; k++) {
      const start = k * stride - contextBefore;
      const input = new Float32Array(inputFrames * C);
      const lo = Math.max(start, 0), hi = Math.min(start + inputFrames, frames);
      for (let t = lo; t < hi; t++) for (let c = 0; c < C; c++) input[(t - start) * C + c] = mix[c][t];
      const outputs = await this.call({type: 'window', mix: input}, [input.buffer]);
      const kept = Math.min(stride, frames - k * stride);
      for (const source of this.sourceNames) {
        const out = outputs[source], dest = estimates[source];
        for (let t = 0; t < kept; t++) {
          for (let c = 0; c < C; c++) dest[c][k * stride + t] = out[(keepOffset + t) * C + c];
        }
      }
      if (progress) progress(k + 1, windows);
    }
    return estimates;
  }

  // The live stream at the model's rate and channels (a song of other channels is converted as by separate).
  stream() {
    const self = this;
    const {blockFrames, latencyFrames} = this.manifest.stream;
    // Started at once: the padding's blocks run before the first push (live audio must not wait for them).
    const started = this.ready.then(() => this.call({type: 'reset'}));
    started.catch(() => {});
    return {
      blockFrames,
      latencyFrames,
      ready: started,
      async push(channels) {
        await started;
        channels = checkChannels(channels, 'push');
        if (channels[0].length !== blockFrames) {
          throw new Error(`push: ${channels[0].length} frames; the stream takes blocks of ${blockFrames}`);
        }
        const mix = convertChannels(channels, self.channels);
        const block = interleave(mix);
        const out = await self.call({type: 'push', block}, [block.buffer]);
        const result = {};
        for (const source of self.sourceNames) {
          result[source] = convertChannels(deinterleave(out[source], self.channels), channels.length);
        }
        return result;
      },
    };
  }
}

function checkChannels(channels, what) {
  if (!Array.isArray(channels) || !channels.length || !channels.every((c) => c instanceof Float32Array)) {
    throw new Error(`${what}: give an array of Float32Array, one per channel`);
  }
  if (channels.length > 2) throw new Error(`${what}: ${channels.length} channels; mono and stereo only`);
  if (!channels[0].length) throw new Error(`${what}: no samples`);
  if (channels.some((c) => c.length !== channels[0].length)) throw new Error(`${what}: channels of unequal length`);
  for (const c of channels) {
    for (let i = 0; i < c.length; i++) {
      if (!Number.isFinite(c[i])) throw new Error(`${what}: contains NaN or Inf samples`);
    }
  }
  return channels;
}

// Averages stereo down to mono or duplicates mono to stereo, as the Python side does.
export function convertChannels(channels, count) {
  if (channels.length === count) return channels;
  if (count === 1) {
    const [a, b] = channels;
    const mono = new Float32Array(a.length);
    for (let i = 0; i < a.length; i++) mono[i] = (a[i] + b[i]) / 2;
    return [mono];
  }
  return Array.from({length: count}, () => channels[0].slice());
}

function interleave(channels) {
  const C = channels.length, n = channels[0].length;
  const out = new Float32Array(n * C);
  for (let c = 0; c < C; c++) for (let t = 0; t < n; t++) out[t * C + c] = channels[c][t];
  return out;
}

function deinterleave(data, C) {
  const n = data.length / C;
  const channels = Array.from({length: C}, () => new Float32Array(n));
  for (let t = 0; t < n; t++) for (let c = 0; c < C; c++) channels[c][t] = data[t * C + c];
  return channels;
}

function padTo(c, n) {
  const out = new Float32Array(n);
  out.set(c);
  return out;
}

function fitLength(c, n) {
  return c.length >= n ? c.subarray(0, n) : padTo(c, n);
}

export const waveUNet = new WaveUNet();
window.waveUNet = waveUNet;
