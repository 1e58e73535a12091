"""wave-unet-app: the page's pieces in process, then the real command in a real browser.

The browser tests start ``wave-unet-app`` as a subprocess on a free port and drive Debian's headless Chromium
with Playwright (its own browser download needs the internet); without Playwright or Chromium they are
skipped, saying which is missing. ``WAVE_UNET_APP_SCREENSHOT=docs/app.png`` also saves the page's screenshot
there (how README's picture is made).
"""

import io
import os
import pathlib
import socket
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import soundfile

import wave_unet_tf as wut
from conftest import assert_quiet, chromium_path
from wave_unet_tf import app, catalogue
from wave_unet_tf.separation import outputs

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
UPLOAD_LIMIT_MB = 1.0


def song(seconds, rate, channels=2, seed=0):
  return np.random.default_rng(seed).uniform(-0.4, 0.4, (int(seconds * rate), channels)).astype(np.float32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  from wave_unet_tf.model.saving import save_model
  config = wut.get_preset("M5").replace(num_layers=4, num_initial_filters=4, sample_rate=16000)
  return save_model(wut.build_model(config), str(tmp_path_factory.mktemp("model") / "tiny.keras"))


# --- in process ---------------------------------------------------------------------------------------------


def test_page_options_are_the_commands_options():
  sources = ("accompaniment", "vocals")
  assert app.page_options("wav", stems=list(sources), source_names=sources) == outputs.OutputOptions()
  assert app.page_options("flac", "24", stems=["vocals"], source_names=sources) == outputs.OutputOptions(
      codec="flac", bit_depth=24, stems=("vocals",))
  assert app.page_options("mp3", bitrate=" 192k ", two_stems="vocals", stems=["vocals"], source_names=sources) == \
      outputs.OutputOptions(codec="mp3", bitrate="192k", two_stems="vocals")
  with pytest.raises(ValueError, match="--stems"):
    app.page_options("wav", stems=[], source_names=sources)
  with pytest.raises(ValueError, match="--bit_depth=32: flac holds 16, 24 bits"):
    app.page_options("flac", "32", source_names=sources)
  with pytest.raises(ValueError, match="--clip=none"):
    app.page_options("wav", "16", clip="none", source_names=sources)


def test_the_page_offers_the_launch_model_and_the_catalogue_only():
  models = app.Models("/models/mine.keras")
  assert models.choices == ("/models/mine.keras", *catalogue.NAMES)
  assert app.Models().choices == catalogue.NAMES and app.Models().default == catalogue.DEFAULT_MODEL
  assert app.Models("M4").choices[0] == "M4" and len(app.Models("M4").choices) == len(catalogue.NAMES)
  with pytest.raises(ValueError, match="not one of this page's models"):
    models.separator("/etc/passwd")
  assert tuple(models.source_names("M6")) == ("bass", "drums", "other", "vocals")  # from the preset, no download


def test_separate_uploads_names_errors_by_the_uploaded_name_and_zips_the_commands_layout(tmp_path, model_path):
  uploads = tmp_path / "uploads" / "0123abcd"
  uploads.mkdir(parents=True)
  (uploads / "a").mkdir()
  good, twin = uploads / "song.wav", uploads / "a" / "song.flac"
  soundfile.write(str(good), song(0.5, 16000), 16000)
  soundfile.write(str(twin), song(0.3, 16000, 1, seed=1), 16000)
  (uploads / "notes.txt").write_text("not audio\n")
  separator = wut.Separator(model_path)
  run = tmp_path / "run"
  run.mkdir()
  seen = []
  songs = list(app.separate_uploads(separator, [str(good), str(uploads / "notes.txt"), str(twin)], str(run),
                                    outputs.OutputOptions(two_stems="vocals"),
                                    progress=lambda done, total, name, index: seen.append((name, index, total))))
  assert [s.track for s in songs] == ["song", "notes", "song (2)"]
  assert songs[1].error.startswith("notes.txt: ") and str(uploads) not in songs[1].error and not songs[1].stems
  assert {("song.wav", 0, 0.5), ("song.flac", 2, 0.3)} <= set(seen)
  for result, source in ((songs[0], good), (songs[2], twin)):
    assert list(result.stems) == ["vocals", "no_vocals"]
    estimates = separator.separate(soundfile.read(str(source), dtype="float32", always_2d=True)[0], 16000)
    written = soundfile.read(result.stems["vocals"], dtype="float32", always_2d=True)[0]
    np.testing.assert_allclose(written, estimates["vocals"], atol=1e-6)
    for stem, path in result.stems.items():
      assert pathlib.Path(result.downloads[stem]).name == f"{result.track} - {stem}.wav"
      assert pathlib.Path(result.downloads[stem]).read_bytes() == pathlib.Path(path).read_bytes()
  archive = app.zip_stems(songs, str(run))
  assert pathlib.Path(archive).name == "separated.zip"
  with zipfile.ZipFile(archive) as z:
    assert sorted(z.namelist()) == ["song (2)/no_vocals.wav", "song (2)/vocals.wav", "song/no_vocals.wav",
                                    "song/vocals.wav"]
    assert z.read("song/vocals.wav") == pathlib.Path(songs[0].stems["vocals"]).read_bytes()


def test_a_workspace_keeps_one_run_per_session_and_nothing_after_it_ends(tmp_path):
  (tmp_path / "work").mkdir()
  workspace = app.Workspace(str(tmp_path / "work"))
  upload = pathlib.Path(workspace.uploads) / "abc" / "song.wav"
  upload.parent.mkdir()
  upload.write_bytes(b"RIFF")
  outside = tmp_path / "mine.wav"
  outside.write_bytes(b"RIFF")
  workspace.note_uploads("s1", [str(upload), str(outside)])  # a path outside the upload folder is never removed
  first = workspace.new_run("s1")
  pathlib.Path(first, "a.wav").write_bytes(b"1")
  second = workspace.new_run("s1")
  other = workspace.new_run("s2")
  workspace.keep_only(second)
  assert not os.path.exists(first) and os.path.isdir(second) and os.path.isdir(other)
  workspace.end_session("s1")
  assert not os.path.exists(os.path.dirname(second)) and not upload.parent.exists() and outside.exists()
  assert os.path.isdir(other)
  workspace.close()
  assert os.listdir(tmp_path / "work") == []  # a --temp_dir that was there stays, empty
  created = app.Workspace(str(tmp_path / "new"))
  created.close()
  assert not (tmp_path / "new").exists()


def test_the_command_refuses_bad_flags_in_one_line():
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.app", "--max_upload_mb", "0"], capture_output=True,
                          text=True, timeout=120, cwd=PROJECT_ROOT)
  assert result.returncode == 1
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert result.stderr.strip().endswith(": error: --max_upload_mb=0.0: must be positive"), result.stderr


@pytest.mark.slow
def test_a_port_in_use_is_refused_in_one_line(server, model_path):
  _, port, _, _ = server
  result = subprocess.run([*_command(), "--model", model_path, "--port", str(port), "--nojit_compile"],
                          capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == \
      f"wave-unet-app: error: --port={port}: in use by another program on 127.0.0.1; choose another port"
  assert_quiet(result.stdout, result.stderr)


# --- a real browser -------------------------------------------------------------------------------------------


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _command():
  script = pathlib.Path(sys.executable).parent / "wave-unet-app"
  return [str(script)] if script.exists() else [sys.executable, "-m", "wave_unet_tf.app"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_path):
  """``wave-unet-app`` on a free port: ``(url, port, temp_dir, process)``."""
  pytest.importorskip("gradio", reason="the page needs Gradio: pip install -e '.[app]'")
  chromium_path()
  temp_dir = tmp_path_factory.mktemp("app") / "work"
  port = _free_port()
  env = dict(os.environ, GRADIO_HEARTBEAT_INTERVAL="0.5")  # a closed page is noticed within a second
  process = subprocess.Popen([*_command(), "--model", model_path, "--port", str(port), "--temp_dir", str(temp_dir),
                              "--max_upload_mb", str(UPLOAD_LIMIT_MB), "--nojit_compile"], cwd=PROJECT_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines = []
  for line in process.stdout:  # the line with the address says it serves
    lines.append(line)
    if "serving on" in line:
      break
  else:
    process.wait(timeout=60)
    pytest.fail(f"wave-unet-app did not start:\n{''.join(lines)}")
  url = line.split("serving on ")[1].split()[0]
  assert url == f"http://127.0.0.1:{port}/"
  yield url, port, temp_dir, process
  process.terminate()
  rest = process.communicate(timeout=60)[0]
  assert process.returncode == 0 and "wave-unet-app: stopped" in rest, rest
  assert_quiet("".join(lines), rest)
  assert "song.wav -> accompaniment, vocals (1.0 s of audio)" in rest.splitlines()
  assert not temp_dir.exists() or not any(temp_dir.iterdir())  # its uploads and stems went with it


@pytest.fixture(scope="module")
def browser(server):
  from playwright.sync_api import sync_playwright
  with sync_playwright() as playwright:
    chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


def _open(browser, url, requests):
  page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
  page.on("request", lambda request: requests.append(request.url))
  page.goto(url)
  page.wait_for_selector("#wut-separate")
  return page


def _upload(page, *paths):
  page.locator("#wut-files button[aria-label=Clear]").click() if page.locator(
      "#wut-files tr.file").count() else None
  page.set_input_files("#wut-files input[type=file]", [str(p) for p in paths])


def _separate(page, *paths):
  for path in paths:  # each upload listed before Separate is pressed
    page.wait_for_selector(f'#wut-files td.filename[aria-label="{pathlib.Path(path).name}"]', timeout=30000)
  page.click("#wut-separate")


def _listening(port):
  """The local addresses listening on ``port`` (IPv4 and IPv6), from /proc/net."""
  found = []
  for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    if not os.path.exists(table):
      continue
    for row in open(table).read().splitlines()[1:]:
      local, state = row.split()[1], row.split()[3]
      address, local_port = local.split(":")
      if state == "0A" and int(local_port, 16) == port:
        found.append(socket.inet_ntop(socket.AF_INET if len(address) == 8 else socket.AF_INET6,
                                      bytes.fromhex(address)[::-1] if len(address) == 8 else
                                      b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8))))
  return found


def _assert_same_audio(path, expected):
  """The same format and samples (to 1e-6). Not the same bytes: libsndfile stamps float WAVs with the time
  they were written (their PEAK chunk), so two runs of the command differ there too."""
  info, expected_info = soundfile.info(str(path)), soundfile.info(str(expected))
  assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
      expected_info.format, expected_info.subtype, expected_info.samplerate, expected_info.channels,
      expected_info.frames)
  np.testing.assert_allclose(soundfile.read(str(path))[0], soundfile.read(str(expected))[0], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_the_page_separates_a_song_into_the_files_the_command_writes(server, browser, model_path, tmp_path):
  from playwright.sync_api import expect
  url, port, temp_dir, _ = server
  assert _listening(port) == ["127.0.0.1"]
  inputs = tmp_path / "in"
  inputs.mkdir()
  good = inputs / "song.wav"
  soundfile.write(str(good), song(1.0, 16000), 16000)
  (inputs / "notes.txt").write_text("these are not audio samples\n")
  too_big = inputs / "long.wav"
  soundfile.write(str(too_big), np.zeros((int(UPLOAD_LIMIT_MB * 2**20 / 8) + 16000, 2), np.float32), 16000,
                  subtype="FLOAT")
  # The command's files and errors, for the same inputs.
  command = subprocess.Popen([sys.executable, "-m", "wave_unet_tf.separate", "--model", model_path, "--output_dir",
                              tmp_path / "command", "--progress=false", "--nojit_compile", "song.wav", "notes.txt"],
                             cwd=inputs, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  requests = []
  page = _open(browser, url, requests)
  _upload(page, inputs / "notes.txt")
  _, stderr = command.communicate(timeout=300)
  assert command.returncode == 1, stderr
  command_error = next(line for line in stderr.splitlines() if "notes.txt" in line).split(": error: ", 1)[1]
  _separate(page, inputs / "notes.txt")
  page.wait_for_selector("#wut-status .wut-error", timeout=120000)
  assert page.inner_text("#wut-status .wut-error") == f"error: {command_error}"

  _upload(page, good)
  _separate(page, good)
  page.wait_for_selector("#wut-zip >> visible=true", timeout=120000)
  expect(page.locator(".wut-download")).to_have_count(2, timeout=60000)  # drawn once the results arrive
  expect(page.locator(".wut-stem")).to_have_count(2)
  assert page.locator(".wut-stem audio").count() >= 2
  expect(page.locator(".wut-song .wut-error")).to_have_count(0)  # the failed upload's result is gone
  downloaded = {}
  for button in page.locator(".wut-download").all():
    with page.expect_download() as download:
      button.click()
    track, stem = download.value.suggested_filename[:-len(".wav")].split(" - ")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    _assert_same_audio(saved, tmp_path / "command" / track / f"{stem}.wav")
    downloaded[f"{track}/{stem}.wav"] = saved.read_bytes()
  assert sorted(downloaded) == ["song/accompaniment.wav", "song/vocals.wav"]
  with page.expect_download() as download:
    page.click("#wut-zip")
  assert download.value.suggested_filename == "song.zip"
  with zipfile.ZipFile(io.BytesIO(pathlib.Path(download.value.path()).read_bytes())) as z:
    assert {name: z.read(name) for name in z.namelist()} == downloaded  # the command's layout, the same files
  if os.environ.get("WAVE_UNET_APP_SCREENSHOT"):
    page.screenshot(path=os.environ["WAVE_UNET_APP_SCREENSHOT"], full_page=True)

  _upload(page, too_big)  # refused before it is sent; the page goes on serving
  page.wait_for_selector("text=exceed the maximum allowed size", timeout=30000)
  assert not any(temp_dir.rglob("long.wav"))
  expect(page.locator(".wut-stem")).to_have_count(2)

  assert [r for r in requests if not r.startswith(url) and not r.startswith(("data:", "blob:"))] == []
  assert any(temp_dir.rglob("*.wav"))
  _assert_serves_the_browser_page(page, url)
  page.close()  # the session ends: its uploads and stems go
  deadline = time.monotonic() + 60
  while any(p.is_file() for p in temp_dir.rglob("*")) and time.monotonic() < deadline:
    time.sleep(0.2)
  assert [str(p) for p in temp_dir.rglob("*") if p.is_file()] == []


def _assert_serves_the_browser_page(page, url):
  """The model's in-browser site (tests/test_browser.py tests the site itself) at browser/, with the headers
  that give it threads, linked from the page."""
  import urllib.error
  import urllib.request
  from wave_unet_tf.web.site import WebError, litertjs_folder
  try:
    litertjs_folder()
  except WebError:
    return  # the app runs without it
  assert page.locator("#wut-browser a").get_attribute("href") == "browser/"
  deadline = time.monotonic() + 180
  while True:  # built in the background
    try:
      with urllib.request.urlopen(url + "browser/manifest.json", timeout=30) as response:
        assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert b'"sources"' in response.read()
        break
    except urllib.error.HTTPError as e:
      assert e.code == 503 and time.monotonic() < deadline, e
      time.sleep(1)
