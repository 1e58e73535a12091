"""wave-unet-export --web: the static site in a real browser (Debian's headless Chromium through Playwright, as
test_app.py drives it), served from 127.0.0.1 with and without the cross-origin isolation headers.

The sites are built from a tiny random model (4 layers, 16 kHz). Without Playwright, Chromium or LiteRT.js
(npm, scripts/install.sh installs all three) the browser tests are skipped, saying which is missing.
``WAVE_UNET_BROWSER_SCREENSHOT=docs/browser.png`` also saves the page's screenshot there (the docs' picture).
"""

import base64
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import wave_unet_tf as wut
from conftest import assert_quiet, chromium_path
from test_precision import LEAST_SNR, snr

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # a microphone playing a tone
RATE = 16000
# Float32 arrays travel to and from the page as base64 (JSON lists of floats would take seconds).
JS_CODEC = """
const dec = (s) => new Float32Array(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)).buffer);
const enc = (a) => { const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength); let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
  return btoa(s); };
"""


def _b64(channel):
  return base64.b64encode(np.ascontiguousarray(channel, np.float32).tobytes()).decode()


def _channels(encoded):
  return np.stack([np.frombuffer(base64.b64decode(c), np.float32) for c in encoded], axis=1)


def _litertjs():
  from wave_unet_tf.web.site import WebError, litertjs_folder
  try:
    litertjs_folder()
  except WebError as e:
    pytest.skip(str(e))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  from wave_unet_tf.model.saving import save_model
  config = wut.get_preset("M5").replace(num_layers=4, num_initial_filters=4, sample_rate=RATE)
  return save_model(wut.build_model(config), str(tmp_path_factory.mktemp("model") / "tiny.keras"))


@pytest.fixture(scope="module")
def sites(tmp_path_factory, model_path):
  """``{precision: site folder}`` for float32 and int8 (1 s windows: a 2.5 s song crosses two seams)."""
  chromium_path()
  _litertjs()
  from wave_unet_tf.model_sources import load_model
  from wave_unet_tf.web.site import build_site
  model = load_model(model_path)
  root = tmp_path_factory.mktemp("sites")
  for precision in ("float32", "int8"):
    build_site(model, str(root / precision), precision, window_seconds=1.0)
  return {precision: root / precision for precision in ("float32", "int8")}


@pytest.fixture(scope="module")
def browser():
  from playwright.sync_api import sync_playwright
  executable = chromium_path()
  with sync_playwright() as playwright:
    chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


class Served:
  """A site on 127.0.0.1 (a free port), with or without the isolation headers."""

  def __init__(self, folder, isolation):
    from wave_unet_tf.web.serve import serve_in_background
    self.server = serve_in_background(str(folder), isolation=isolation)
    self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

  def close(self):
    self.server.shutdown()
    self.server.server_close()


def _open(browser, url, requests=None, errors=None):
  page = browser.new_page(viewport={"width": 1100, "height": 900}, accept_downloads=True, permissions=["microphone"])
  if requests is not None:
    page.on("request", lambda request: requests.append(request.url))
  page.on("pageerror", lambda error: (errors if errors is not None else []).append(str(error)))
  page.goto(url)
  return page


def _separate(page, song, rate):
  encoded = page.evaluate("async ([channels, rate]) => {" + JS_CODEC + """
    const stems = await window.waveUNet.separate(channels.map(dec), rate);
    return Object.fromEntries(Object.entries(stems).map(([s, c]) => [s, c.map(enc)])); }""",
                          [[_b64(song[:, c]) for c in range(song.shape[1])], rate])
  return {source: _channels(channels) for source, channels in encoded.items()}


def _stream(page, song):
  """``song`` pushed block by block: ``(latencyFrames, {source: the outputs joined})``."""
  result = page.evaluate("async (channels) => {" + JS_CODEC + """
    const song = channels.map(dec), stream = window.waveUNet.stream(), B = stream.blockFrames, joined = {};
    for (let k = 0; k + B <= song[0].length; k += B) {
      const out = await stream.push(song.map((c) => c.slice(k, k + B)));
      for (const [s, c] of Object.entries(out)) {
        if (c[0].length !== B) throw new Error('a push returned ' + c[0].length + ' frames');
        joined[s] ||= song.map(() => new Float32Array(song[0].length));
        c.forEach((x, i) => joined[s][i].set(x, k));
      }
    }
    return {latency: stream.latencyFrames, block: B,
            stems: Object.fromEntries(Object.entries(joined).map(([s, c]) => [s, c.map(enc)]))}; }""",
                         [_b64(song[:, c]) for c in range(song.shape[1])])
  return result["latency"], result["block"], {s: _channels(c) for s, c in result["stems"].items()}


def _song(seconds, channels=2, seed=0, rate=RATE):
  return np.random.default_rng(seed).uniform(-0.4, 0.4, (int(seconds * rate), channels)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("isolation", [True, False], ids=["isolated", "plain-host"])
def test_separate_equals_the_separator_and_the_stream_equals_separate(sites, browser, model_path, isolation):
  served = Served(sites["float32"], isolation)
  errors = []
  page = _open(browser, served.url, errors=errors)
  try:
    info = page.evaluate("window.waveUNet.ready.then((w) => [w.sampleRate, w.sourceNames, w.threads, w.note])")
    assert info[:2] == [RATE, ["accompaniment", "vocals"]]
    if isolation:
      assert info[2] >= 1 and info[3] == ""  # threads: as many as the machine's cores
    else:
      assert info[2] == 1 and "single thread" in info[3] and "not cross-origin isolated" in info[3]
      page.wait_for_selector("#engine:has-text('single thread')")
    separator = wut.Separator(model_path, jit_compile=False)
    for song in (_song(2.5), _song(0.7, channels=1, seed=1)):  # across the window seams; mono in, mono out
      stems = _separate(page, song, RATE)
      expected = separator.separate(song, RATE)
      for source in expected:
        assert stems[source].shape == song.shape
        np.testing.assert_allclose(stems[source], expected[source], rtol=0, atol=1e-4)
    if isolation:
      # Another rate: resample.js where the Separator uses soxr; a band-limited song agrees to ~55 dB.
      t = np.arange(int(1.2 * 22050))[:, None] / 22050
      song = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t + np.array([0, 1]))).astype(
          np.float32)
      stems, expected = _separate(page, song, 22050), separator.separate(song, 22050)
      for source in expected:
        assert stems[source].shape == song.shape and snr(expected[source], stems[source]) > 40
    song = _song(2.0, seed=2)
    latency, block, streamed = _stream(page, song)
    whole = _separate(page, song, RATE)
    usable = len(song) // block * block
    for source in whole:
      np.testing.assert_allclose(streamed[source][latency:usable], whole[source][:usable - latency], rtol=0, atol=1e-4)
      assert not np.any(streamed[source][:latency])
    silence = _separate(page, np.zeros((1000, 2), np.float32), RATE)
    assert all(not np.any(x) for x in silence.values())
    assert errors == []
  finally:
    page.close()
    served.close()


@pytest.mark.slow
def test_int8_is_within_the_snr_the_python_int8_path_meets(sites, browser, model_path):
  served = Served(sites["int8"], True)
  page = _open(browser, served.url)
  try:
    assert page.evaluate("window.waveUNet.ready.then((w) => w.manifest.precision)") == "int8"
    song = _song(2.5)
    stems = _separate(page, song, RATE)
    reference = wut.Separator(model_path, jit_compile=False).separate(song, RATE)
    for source in reference:
      assert snr(reference[source], stems[source]) >= LEAST_SNR["int8"], source
  finally:
    page.close()
    served.close()


@pytest.mark.slow
def test_the_page_separates_a_file_and_live_audio_with_no_other_origin(sites, browser, model_path, tmp_path):
  from playwright.sync_api import expect
  served = Served(sites["float32"], True)
  requests = []
  page = _open(browser, served.url, requests)
  try:
    page.wait_for_selector("#file:not([disabled])", timeout=60000)
    assert "thread" in page.inner_text("#engine")
    notes = tmp_path / "notes.txt"
    notes.write_text("these are not audio samples\n")
    page.set_input_files("#file", str(notes))
    expect(page.locator("#error")).to_have_text("error: notes.txt: this browser cannot decode it as audio",
                                                timeout=30000)
    song = _song(2.5)
    path = tmp_path / "song.wav"
    soundfile.write(str(path), song, RATE, subtype="FLOAT")
    page.set_input_files("#file", str(path))  # the page goes on after the error
    expect(page.locator(".stem audio")).to_have_count(2, timeout=60000)
    expect(page.locator("#error")).to_be_hidden()
    assert "× real time" in page.inner_text("#progress-text")
    expected = wut.Separator(model_path, jit_compile=False).separate(song, RATE)
    for link in page.locator("a.download").all():
      with page.expect_download() as download:
        link.click()
      name = download.value.suggested_filename
      assert name in ("song - accompaniment.wav", "song - vocals.wav")
      download.value.save_as(tmp_path / name)
      written, rate = soundfile.read(str(tmp_path / name), dtype="float32", always_2d=True)
      assert rate == RATE
      np.testing.assert_allclose(written, expected[name[len("song - "):-len(".wav")]], rtol=0, atol=1e-4)

    page.click("#live-file")  # the song through the AudioWorklet and the streaming model
    page.click("#karaoke")
    assert page.is_checked("#mute-vocals") and not page.is_checked("#mute-accompaniment")
    page.wait_for_function("parseFloat(document.querySelector('#live-status').textContent.split(' ')[1]) > 0.5",
                           timeout=30000)
    assert re.fullmatch(r"\d+\.\d\d s", page.inner_text("#latency"))
    if os.environ.get("WAVE_UNET_BROWSER_SCREENSHOT"):
      page.screenshot(path=os.environ["WAVE_UNET_BROWSER_SCREENSHOT"], full_page=True)
    page.click("#live-stop")
    page.click("#live-mic")  # Chromium's fake microphone
    page.wait_for_function("document.querySelector('#live-status').textContent.startsWith('live: ') && "
                           "parseFloat(document.querySelector('#live-status').textContent.split(' ')[1]) > 0.5",
                           timeout=30000)
    expect(page.locator("#error")).to_be_hidden()
    page.click("#live-stop")
    assert [r for r in requests if not r.startswith(served.url) and not r.startswith(("data:", "blob:"))] == []
  finally:
    page.close()
    served.close()


@pytest.mark.slow
def test_a_model_that_fails_to_load_and_a_browser_without_webassembly_are_said_on_the_page(sites, browser, tmp_path):
  broken = tmp_path / "broken"
  shutil.copytree(sites["float32"], broken)
  (broken / "model.tflite").write_bytes(b"not a model")
  served = Served(broken, False)
  page = _open(browser, served.url)
  try:
    page.wait_for_selector("#error:not([hidden])", timeout=60000)
    assert page.inner_text("#error").startswith("error: the model failed to load")
    assert page.evaluate("window.waveUNet.ready.then(() => 'loaded', (e) => e.message)").startswith(
        "the model failed to load")
    page.close()
    page = browser.new_page()
    page.add_init_script("delete window.WebAssembly")  # a browser without it
    page.goto(served.url)
    page.wait_for_selector("#error:not([hidden])", timeout=60000)
    assert page.inner_text("#error") == ("error: this browser cannot run the model: it has no WebAssembly or no Web "
                                         "Workers")
  finally:
    page.close()
    served.close()


@pytest.mark.slow
def test_the_command_refuses_an_existing_folder_and_a_bad_model_in_one_line(tmp_path, model_path):
  _litertjs()
  existing = tmp_path / "site"
  existing.mkdir()
  (tmp_path / "bad.keras").write_bytes(b"not a model")
  command = [sys.executable, "-m", "wave_unet_tf.export"]
  refused = subprocess.run([*command, "--model", model_path, "--web", str(existing)], capture_output=True, text=True,
                           timeout=300, cwd=PROJECT_ROOT)
  assert refused.returncode == 1
  assert len(refused.stderr.strip().splitlines()) == 1
  assert refused.stderr.strip().endswith(f": error: --web={existing}: already exists (pass --overwrite to replace it)")
  (existing / "notes.txt").write_text("mine\n")
  from wave_unet_tf.web.site import WebError, check_destination
  with pytest.raises(WebError, match="not a site of wave-unet-export --web"):
    check_destination(str(existing), overwrite=True)
  bad = subprocess.run([*command, "--model", str(tmp_path / "bad.keras"), "--web", str(tmp_path / "new")],
                       capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
  assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
  assert "bad.keras" in bad.stderr
  assert_quiet(bad.stdout, bad.stderr)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.keras", "site"]  # nothing left behind
  assert [p.name for p in existing.iterdir()] == ["notes.txt"]
