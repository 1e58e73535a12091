// The page: a song separated whole (players, WAV downloads, the real-time factor) and live separation.
import {waveUNet} from './wave-unet.js';

const $ = (id) => document.getElementById(id);
let song = null;  // {name, channels, sampleRate} of the chosen file, decoded at the model's rate
let live = null;  // {context, node, source, stream}
const gains = {muted: new Set(), solo: new Set()};

function showError(message) {
  $('error').textContent = `error: ${message}`;
  $('error').hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

const seconds = (frames, rate) => (frames / rate).toFixed(2);

async function main() {
  try {
    await waveUNet.ready;
  } catch (error) {
    $('model-info').textContent = '';
    showError(error.message || String(error));
    return;
  }
  const m = waveUNet.manifest;
  $('model-info').textContent = `Model: ${m.sources.join(', ')}; ${m.sampleRate} Hz, ` +
      `${m.channels === 1 ? 'mono' : 'stereo'}, ${m.precision}.`;
  $('engine').textContent = `LiteRT.js ${m.litertjs} on WebAssembly, ${waveUNet.threads} ` +
      `thread${waveUNet.threads === 1 ? '' : 's'}${waveUNet.note ? ` (${waveUNet.note})` : ''}.`;
  const {blockFrames, latencyFrames} = m.stream;
  $('latency').textContent = `${seconds(latencyFrames + 2 * blockFrames, m.sampleRate)} s`;
  $('file').disabled = false;
  $('live-mic').disabled = false;
  buildMixer();
}

$('file').addEventListener('change', async () => {
  const file = $('file').files[0];
  if (!file) return;
  clearError();
  $('stems').replaceChildren();
  $('live-file').disabled = true;
  song = null;
  $('file').disabled = true;
  try {
    await separateFile(file);
  } catch (error) {
    showError(error.message || String(error));
    $('progress').hidden = true;
    $('progress-text').textContent = '';
  } finally {
    $('file').disabled = false;
  }
});

async function separateFile(file) {
  const rate = waveUNet.sampleRate;
  let audio;
  try {
    // Decoded straight at the model's rate: the stems come out at it.
    audio = await new OfflineAudioContext(1, 1, rate).decodeAudioData(await file.arrayBuffer());
  } catch (error) {
    throw new Error(`${file.name}: this browser cannot decode it as audio`);
  }
  const channels = Array.from({length: Math.min(2, audio.numberOfChannels)}, (_, c) => audio.getChannelData(c));
  if (audio.numberOfChannels > 2) {  // more than stereo: down to stereo by the browser's own mixing rules
    const context = new OfflineAudioContext(2, audio.length, rate);
    const node = new AudioBufferSourceNode(context, {buffer: audio});
    node.connect(context.destination);
    node.start();
    const stereo = await context.startRendering();
    channels.splice(0, 2, stereo.getChannelData(0), stereo.getChannelData(1));
  }
  song = {name: file.name, channels, sampleRate: rate};
  $('live-file').disabled = live !== null;
  $('progress').hidden = false;
  $('progress').value = 0;
  $('progress-text').textContent = `separating ${file.name}…`;
  const started = performance.now();
  const stems = await waveUNet.separate(channels, rate, {
    progress: (done, total) => {
      $('progress').value = done / total;
      $('progress-text').textContent = `separating ${file.name}: ${Math.round(100 * done / total)}%`;
    },
  });
  const elapsed = (performance.now() - started) / 1000;
  const duration = channels[0].length / rate;
  $('progress-text').textContent = `${file.name}: ${duration.toFixed(1)} s of audio separated in ` +
      `${elapsed.toFixed(1)} s, ${(duration / elapsed).toFixed(1)}× real time`;
  $('progress-text').dataset.realtimeFactor = String(duration / elapsed);
  const track = file.name.replace(/\.[^.]*$/, '');
  for (const source of waveUNet.sourceNames) {
    const url = URL.createObjectURL(wav(stems[source], rate));
    const row = document.createElement('div');
    row.className = 'stem';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = source;
    const player = document.createElement('audio');
    player.controls = true;
    player.src = url;
    const link = document.createElement('a');
    link.href = url;
    link.download = `${track} - ${source}.wav`;
    link.textContent = 'Download WAV';
    link.className = 'download';
    row.append(name, player, link);
    $('stems').append(row);
  }
}

// 32-bit float WAV, interleaved.
function wav(channels, rate) {
  const C = channels.length, n = channels[0].length;
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => [...s].forEach((ch, i) => header.setUint8(at + i, ch.charCodeAt(0)));
  text(0, 'RIFF');
  header.setUint32(4, 36 + n * C * 4, true);
  text(8, 'WAVE');
  text(12, 'fmt ');
  header.setUint32(16, 16, true);
  header.setUint16(20, 3, true);
  header.setUint16(22, C, true);
  header.setUint32(24, rate, true);
  header.setUint32(28, rate * C * 4, true);
  header.setUint16(32, C * 4, true);
  header.setUint16(34, 32, true);
  text(36, 'data');
  header.setUint32(40, n * C * 4, true);
  const data = new Float32Array(n * C);
  for (let c = 0; c < C; c++) for (let t = 0; t < n; t++) data[t * C + c] = channels[c][t];
  return new Blob([header, data], {type: 'audio/wav'});
}

// --- live ---------------------------------------------------------------------------------------------------

function buildMixer() {
  const rows = waveUNet.sourceNames.map((source) => {
    const row = document.createElement('tr');
    const name = document.createElement('td');
    name.textContent = source;
    const cells = ['mute', 'solo'].map((kind) => {
      const cell = document.createElement('td');
      const label = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.id = `${kind}-${source}`;
      box.addEventListener('change', () => {
        gains[kind === 'mute' ? 'muted' : 'solo'][box.checked ? 'add' : 'delete'](source);
        sendGains();
      });
      label.append(box, ` ${kind}`);
      cell.append(label);
      return cell;
    });
    row.append(name, ...cells);
    return row;
  });
  $('mixer').replaceChildren(...rows);
  const vocals = waveUNet.sourceNames.includes('vocals');
  $('karaoke').disabled = !vocals;
  $('karaoke').title = vocals ? '' : 'this model has no vocals source';
}

function currentGains() {
  return Object.fromEntries(waveUNet.sourceNames.map((s) => [s,
    (gains.solo.size ? gains.solo.has(s) : !gains.muted.has(s)) ? 1 : 0]));
}

function sendGains() {
  if (live) live.node.port.postMessage({gains: currentGains()});
}

$('karaoke').addEventListener('click', () => {
  gains.solo.clear();
  gains.muted = new Set(['vocals']);
  for (const s of waveUNet.sourceNames) {
    $(`mute-${s}`).checked = s === 'vocals';
    $(`solo-${s}`).checked = false;
  }
  sendGains();
});

async function startLive(kind) {
  clearError();
  $('live-status').textContent = 'live: starting…';
  await stopLive();
  const m = waveUNet.manifest;
  const {blockFrames, latencyFrames} = m.stream;
  // The context runs at the model's rate; the browser resamples to and from the sound card.
  const context = new AudioContext({sampleRate: m.sampleRate, latencyHint: 'playback'});
  try {
    const stream = waveUNet.stream();
    await stream.ready;
    await context.audioWorklet.addModule(new URL('live-worklet.js', import.meta.url));
    const node = new AudioWorkletNode(context, 'wave-unet-live', {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [m.channels],
      processorOptions: {blockFrames, channels: m.channels, sources: m.sources, delayFrames: 2 * blockFrames},
    });
    let source;
    if (kind === 'mic') {
      const media = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: false,
        noiseSuppression: false, autoGainControl: false}});
      source = new MediaStreamAudioSourceNode(context, {mediaStream: media});
      source.stopTracks = () => media.getTracks().forEach((t) => t.stop());
    } else {
      const buffer = new AudioBuffer({numberOfChannels: song.channels.length, length: song.channels[0].length,
        sampleRate: song.sampleRate});
      song.channels.forEach((c, k) => buffer.copyToChannel(c, k));
      source = new AudioBufferSourceNode(context, {buffer});
      source.onended = () => {  // stops once the song's last stems have played
        const tail = 1000 * (latencyFrames + 2 * blockFrames) / m.sampleRate;
        setTimeout(() => { if (live && live.source === source) stopLive(); }, tail);
      };
      source.start();
    }
    source.connect(node);
    node.connect(context.destination);
    live = {context, node, source, stream, failed: false, pending: Promise.resolve()};
    const state = live;
    node.port.onmessage = (event) => {
      const {block, underruns, played} = event.data;
      if (block) {
        state.pending = state.pending.then(async () => {
          if (state.failed) return;
          try {
            const stems = await stream.push(block);
            node.port.postMessage({stems});
          } catch (error) {
            state.failed = true;
            showError(`live: ${error.message || error}`);
          }
        });
      } else if (underruns !== undefined) {
        $('live-status').textContent = `live: ${(played / m.sampleRate).toFixed(1)} s played` +
            (underruns ? `, ${underruns} blocks came back late (this computer is too slow for real time ` +
              `with this model)` : ', in real time');
        $('live-status').dataset.underruns = String(underruns);
      }
    };
    sendGains();
    $('live-stop').disabled = false;
    $('live-file').disabled = true;
    $('live-mic').disabled = true;
    $('live-status').textContent = `live: the stems come ${seconds(latencyFrames + 2 * blockFrames, m.sampleRate)} s ` +
        'after the sound';
  } catch (error) {
    context.close();
    live = null;
    showError(kind === 'mic' ? `microphone: ${error.message || error}` : `live: ${error.message || error}`);
  }
}

async function stopLive() {
  if (!live) return;
  const {context, source} = live;
  live = null;
  try {
    if (source.stop) source.stop();
    if (source.stopTracks) source.stopTracks();
  } catch (error) { /* already stopped */ }
  await context.close();
  $('live-stop').disabled = true;
  $('live-file').disabled = !song;
  $('live-mic').disabled = false;
}

$('live-file').addEventListener('click', () => startLive('file'));
$('live-mic').addEventListener('click', () => startLive('mic'));
$('live-stop').addEventListener('click', stopLive);

main();
