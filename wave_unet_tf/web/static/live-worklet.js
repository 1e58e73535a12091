// The live path's audio thread: gathers the input into blocks for the stream, and plays the stems that come
// back at a fixed delay, mixed by the page's mute/solo gains.
//   to the page:   {block: [Float32Array per channel]} every blockFrames frames; {underruns, played} now and then
//   from the page: {stems: {source: [Float32Array per channel]}} one block, in order; {gains: {source: number}}
// The stems of block k are the stream's output for frames [k * blockFrames, (k + 1) * blockFrames); frame T of
// the input is played with output frame T - delayFrames (silence while it has not come back: an underrun).
class WaveUNetLive extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const {blockFrames, channels, sources, delayFrames} = options.processorOptions;
    Object.assign(this, {blockFrames, channels, sources, delayFrames});
    this.gains = Object.fromEntries(sources.map((s) => [s, 1]));
    this.block = this.newBlock();
    this.filled = 0;
    this.frames = 0;  // input frames so far
    this.stems = [];  // blocks come back in order; the first is block `first`
    this.first = 0;
    this.underruns = 0;
    this.reported = 0;
    this.port.onmessage = (event) => {
      if (event.data.stems) this.stems.push(event.data.stems);
      if (event.data.gains) this.gains = event.data.gains;
    };
  }

  newBlock() {
    return Array.from({length: this.channels}, () => new Float32Array(this.blockFrames));
  }

  process(inputs, outputs) {
    const input = inputs[0] || [];
    const output = outputs[0];
    const n = output[0].length;
    for (let i = 0; i < n; i++) {
      // Input: the model's channels (stereo averaged to mono, mono doubled; no input is silence).
      for (let c = 0; c < this.channels; c++) {
        let x = 0;
        if (input.length === this.channels) x = input[c][i];
        else if (input.length === 1) x = input[0][i];
        else if (input.length >= 2) x = (input[0][i] + input[1][i]) / 2;
        this.block[c][this.filled] = x;
      }
      if (++this.filled === this.blockFrames) {
        this.port.postMessage({block: this.block}, this.block.map((c) => c.buffer));
        this.block = this.newBlock();
        this.filled = 0;
      }
      // Output: the stems of frame (this.frames - delayFrames), mixed.
      const t = this.frames - this.delayFrames;
      let stems = null;
      if (t >= 0) {
        const k = Math.floor(t / this.blockFrames);
        while (this.first < k && this.stems.length) {
          this.stems.shift();
          this.first++;
        }
        if (this.first === k && this.stems.length) stems = this.stems[0];
        else if (t % this.blockFrames === 0) this.underruns++;
      }
      const at = t % this.blockFrames;
      for (let c = 0; c < output.length; c++) {
        let y = 0;
        if (stems) {
          const channel = Math.min(c, this.channels - 1);
          for (const source of this.sources) y += this.gains[source] * stems[source][channel][at];
        }
        output[c][i] = y;
      }
      this.frames++;
    }
    if (this.frames - this.reported >= sampleRate / 4) {
      this.reported = this.frames;
      this.port.postMessage({underruns: this.underruns, played: Math.max(0, this.frames - this.delayFrames)});
    }
    return true;
  }
}

registerProcessor('wave-unet-live', WaveUNetLive);
