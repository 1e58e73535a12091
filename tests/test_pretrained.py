"""The paper's pretrained models by name (wave_unet_tf.catalogue, wave_unet_tf.pretrained): the release
archive served by a local HTTP server (tests/released_models.py), downloaded once, resumed, checked, extracted
safely, converted once; mirrors, local copies and offline use; `wave-unet-separate` without --model."""

import dataclasses
import os
import pathlib
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import soundfile

from wave_unet_tf import catalogue, pretrained
from wave_unet_tf.config import ORIGINAL_NAMES, get_preset

from conftest import ORIGINAL_TF1, assert_quiet
from released_models import RELEASED, Server, sha256, write_small_release, zip_folders


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
  """Each test starts with an empty model cache and no repo set (`serve` sets it; restored after the test);
  returns the folder of released models."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  monkeypatch.setenv(pretrained.REPO_ENV, "")
  monkeypatch.delenv(pretrained.REPO_ENV)
  return tmp_path / "cache" / "wave_unet_tf" / "models" / "released"


@pytest.fixture(scope="module")
def small_release(tmp_path_factory):
  """A models.zip in the release layout with random bytes for checkpoints (for download and extraction)."""
  root = tmp_path_factory.mktemp("small_release")
  return write_small_release(root), root / "small"


@pytest.fixture
def server(tmp_path):
  (tmp_path / "www").mkdir()
  served = Server(tmp_path / "www")
  yield served
  served.close()


def serve(server, archive, name="models.zip"):
  """Serves ``archive`` as ``name``; sets WAVE_UNET_MODEL_REPO to its URL and returns the URL."""
  target = server.folder / name
  if target.exists():
    target.unlink()
  os.symlink(archive, target)
  url = f"{server.url}/{name}"
  os.environ[pretrained.REPO_ENV] = url
  return url


def same_files(folder, original):
  folder, original = pathlib.Path(folder), pathlib.Path(original)
  assert sorted(os.listdir(folder)) == sorted(os.listdir(original))
  for name in os.listdir(original):
    assert (folder / name).read_bytes() == (original / name).read_bytes(), name


def cache_files(own_cache):
  return sorted(str(p.relative_to(own_cache)) for p in own_cache.rglob("*") if p.name != ".lock") \
      if own_cache.exists() else []


def test_catalogue_names_the_three_released_models_consistently_with_the_presets():
  assert catalogue.DEFAULT_MODEL == "M5-HighSR" and catalogue.NAMES == ("M5-HighSR", "M4", "M6")
  for entry in catalogue.ENTRIES:
    preset = get_preset(entry.preset)
    assert entry.sources == preset.source_names and entry.sample_rate == preset.sample_rate
    assert ORIGINAL_NAMES[entry.original_name] == entry.preset == entry.name
    assert entry.folder == entry.original_name == RELEASED[entry.name][0]
    assert set(entry.sdr) == set(entry.sources) and entry.sdr_source
    assert entry.url.startswith("https://") and entry.sha256 is None  # not learnable here: recorded instead
    assert catalogue.is_name(entry.name) and catalogue.is_name(entry.original_name)
    assert catalogue.get(entry.original_name) is entry
  assert not catalogue.is_name("m4") and not catalogue.is_name("checkpoints/M4") and not catalogue.is_name(None)
  with pytest.raises(ValueError, match="M9: not a pretrained model's name"):
    catalogue.get("M9")


def test_downloaded_once_extracted_by_name_and_then_no_network_at_all(server, small_release, own_cache, capfd):
  archive, folders = small_release
  url = serve(server, archive)
  folder = pretrained.fetch("M4")
  assert folder == str(own_cache / "baseline_stereo")
  same_files(folder, folders / "baseline_stereo")
  err = capfd.readouterr().err
  digest = sha256(archive)
  assert f"sha256 {digest}" in err and "recorded" in err and "models.zip" in err  # the progress bar's name too
  assert (own_cache / "models.zip.sha256").read_text().split()[:2] == [digest, url]
  assert cache_files(own_cache) == sorted(["models.zip", "models.zip.sha256", "baseline_stereo",
                                           *(f"baseline_stereo/{f}" for f in os.listdir(folders / "baseline_stereo"))])
  assert len(server.requests) == 1
  server.close()  # from here on any request fails
  assert pretrained.fetch("M4") == pretrained.fetch("baseline_stereo") == folder
  same_files(pretrained.fetch("full_multi_instrument"), folders / "full_multi_instrument")  # from the kept archive
  from wave_unet_tf import models
  listed = models.table()
  assert str(own_cache / "full_multi_instrument") in listed and f"archive only: {own_cache / 'models.zip'}" in listed
  assert "M5-HighSR (default)" in listed and "vocals 4.95" in listed and url in listed


def test_a_download_cut_short_leaves_no_archive_and_the_next_run_resumes_it(server, small_release, own_cache):
  archive, folders = small_release
  serve(server, archive)
  server.cut_after = 100_000
  with pytest.raises(pretrained.ModelRepoError) as error:
    pretrained.fetch("M6")
  message = str(error.value)
  assert "cut short at 0.1 of" in message and "run again to resume" in message and "\n" not in message
  assert not (own_cache / "models.zip").exists() and not (own_cache / "full_multi_instrument").exists()
  assert (own_cache / "models.zip.part").stat().st_size == 100_000
  same_files(pretrained.fetch("M6"), folders / "full_multi_instrument")
  assert server.requests[-1][1] == "bytes=100000-"
  assert sha256(own_cache / "models.zip") == sha256(archive) and not (own_cache / "models.zip.part").exists()


def test_a_killed_download_leaves_no_archive_and_the_next_run_resumes_it(server, small_release, own_cache, tmp_path):
  archive, folders = small_release
  url = serve(server, archive)
  server.hold_after = 200_000
  child = subprocess.Popen([sys.executable, "-c", "from wave_unet_tf import pretrained; pretrained.fetch('M4')"],
                           env={**os.environ, pretrained.REPO_ENV: url}, stderr=subprocess.DEVNULL)
  part = own_cache / "models.zip.part"
  try:
    assert server.holding.wait(120), "the download did not start"
    hang_guard = time.monotonic() + 120
    while not (part.exists() and part.stat().st_size == 200_000):  # what was sent, on disk under the temporary name
      assert child.poll() is None, "the download ended while the server held it"
      assert time.monotonic() < hang_guard, "what the server sent never reached the temporary file"
      time.sleep(0.02)
  finally:
    child.send_signal(signal.SIGKILL)
    child.wait()
    server.release.set()
  assert child.returncode == -signal.SIGKILL
  assert not (own_cache / "models.zip").exists() and not (own_cache / "baseline_stereo").exists()
  same_files(pretrained.fetch("M4"), folders / "baseline_stereo")
  assert server.requests[-1][1] == "bytes=200000-"
  assert sha256(own_cache / "models.zip") == sha256(archive)


@pytest.mark.parametrize("where", ["repo", "catalogue"])
def test_an_archive_with_another_sha256_is_refused_and_not_kept(where, server, small_release, own_cache, capfd,
                                                                 monkeypatch):
  archive, _ = small_release
  url = serve(server, archive)
  wrong = "0" * 64
  if where == "repo":
    monkeypatch.setenv(pretrained.REPO_ENV, f"{url}#sha256={wrong}")
  else:
    entry = catalogue.get("M4")
    monkeypatch.setitem(catalogue._BY_NAME, "M4", dataclasses.replace(entry, sha256=wrong))
  with pytest.raises(pretrained.ModelRepoError, match=f"sha256 is {sha256(archive)}, not {wrong}; not kept"):
    pretrained.fetch("M4")
  assert cache_files(own_cache) == []
  # The right one is taken, and there is nothing to record.
  monkeypatch.setitem(catalogue._BY_NAME, "M4", dataclasses.replace(catalogue.get("M4"), sha256=sha256(archive)))
  monkeypatch.setenv(pretrained.REPO_ENV, url)
  capfd.readouterr()
  pretrained.fetch("M4")
  assert "recorded" not in capfd.readouterr().err and not (own_cache / "models.zip.sha256").exists()


def test_a_changed_archive_is_said(server, small_release, own_cache, tmp_path, capfd):
  archive, _ = small_release
  serve(server, archive)
  pretrained.fetch("M4")
  for name in ("models.zip", "baseline_stereo"):  # as if the cache were cleared but for the record
    path = own_cache / name
    os.remove(path) if path.is_file() else shutil.rmtree(path)
  other = write_small_release(tmp_path / "other", seed=1)
  serve(server, other)
  capfd.readouterr()
  pretrained.fetch("M4")
  assert f"sha256 {sha256(other)} differs from {sha256(archive)}" in capfd.readouterr().err


def unsafe_archive(path, member, small_folders):
  zip_folders(path, small_folders)
  with zipfile.ZipFile(path, "a") as z:
    if member == "link":
      info = zipfile.ZipInfo("baseline_stereo/evil")
      info.external_attr = (stat.S_IFLNK | 0o777) << 16
      z.writestr(info, "/etc")
    else:
      z.writestr(zipfile.ZipInfo(member), "evil")
  return path


@pytest.mark.parametrize("member", ["../evil.txt", "baseline_stereo/../../evil.txt", "ABSOLUTE", "link"])
def test_members_outside_the_folder_are_refused_and_nothing_is_written_outside_the_cache(
    member, server, small_release, own_cache, tmp_path):
  member = str(tmp_path / "evil.txt") if member == "ABSOLUTE" else member
  serve(server, unsafe_archive(tmp_path / "unsafe.zip", member, small_release[1]))
  with pytest.raises(pretrained.ModelRepoError) as error:
    pretrained.fetch("M4")
  shown = "baseline_stereo/evil" if member == "link" else member
  assert f"member {shown!r} is" in str(error.value) and "refused" in str(error.value)
  assert cache_files(own_cache) == []  # the archive not kept, nothing extracted
  written = [p for p in tmp_path.rglob("evil*")] + list(pathlib.Path(own_cache).parent.parent.rglob("evil*"))
  assert written == []


@pytest.mark.parametrize("damage", ["truncated", "flipped byte"])
def test_a_damaged_archive_is_refused_and_not_kept(damage, server, small_release, own_cache, tmp_path):
  data = bytearray(small_release[0].read_bytes())
  if damage == "truncated":
    data = data[:len(data) // 2]
  else:
    with zipfile.ZipFile(small_release[0]) as z:
      info = next(i for i in z.infolist() if i.filename.startswith("baseline_stereo/") and ".data-" in i.filename)
    data[info.header_offset + 30 + len(info.filename) + 1000] ^= 0xFF  # inside the member's compressed bytes
  (tmp_path / "damaged.zip").write_bytes(bytes(data))
  serve(server, tmp_path / "damaged.zip")
  with pytest.raises(pretrained.ModelRepoError, match=r"damaged archive .*; removed, run again to download it again"):
    pretrained.fetch("M4")
  assert cache_files(own_cache) == []


def test_extraction_is_bounded(server, small_release, own_cache, monkeypatch):
  serve(server, small_release[0])
  monkeypatch.setattr(pretrained, "MAX_FOLDER_BYTES", 100_000)
  with pytest.raises(pretrained.ModelRepoError, match=r"baseline_stereo/ would take 0.3 MB, more than a checkpoint "
                                                      r"does \(0.1 MB\)"):
    pretrained.fetch("M4")
  assert cache_files(own_cache) == []


def test_extraction_counts_what_it_writes_not_what_the_archive_declares(small_release, tmp_path, monkeypatch):
  monkeypatch.setattr(pretrained, "MAX_FOLDER_BYTES", 100_000)

  class TooLarge(Exception):
    pass

  with zipfile.ZipFile(small_release[0]) as z:
    members = [m for m in z.infolist() if m.filename.startswith("baseline_stereo/") and not m.is_dir()]
    with pytest.raises(TooLarge):
      pretrained._write_members(z, members, "baseline_stereo/", str(tmp_path), TooLarge)
  assert sum(f.stat().st_size for f in tmp_path.iterdir()) <= 100_000


def test_an_archive_without_the_folder_is_named(server, tmp_path, own_cache):
  (tmp_path / "other" / "something").mkdir(parents=True)
  (tmp_path / "other" / "something" / "x.index").write_bytes(b"x")
  serve(server, zip_folders(tmp_path / "other.zip", tmp_path / "other"))
  with pytest.raises(pretrained.ModelRepoError, match="no folder full_44KHz/ in the archive"):
    pretrained.fetch("M5-HighSR")


def test_folders_are_found_at_any_depth_of_the_archive(server, small_release, tmp_path):
  zip_folders(tmp_path / "nested.zip", small_release[1], prefix="Wave-U-Net/checkpoints/")
  serve(server, tmp_path / "nested.zip")
  same_files(pretrained.fetch("M5-HighSR"), small_release[1] / "full_44KHz")


def closed_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_unreachable_repo_names_the_url_the_cache_and_both_ways_out(own_cache, monkeypatch):
  url = f"http://127.0.0.1:{closed_port()}/models.zip"
  monkeypatch.setenv(pretrained.REPO_ENV, url)
  with pytest.raises(pretrained.ModelRepoError) as error:
    pretrained.fetch("M5-HighSR")
  message = str(error.value)
  assert message.startswith(f"M5-HighSR: cannot download {url} (")
  assert str(own_cache) in message and pretrained.REPO_ENV in message and "--model PATH" in message
  assert cache_files(own_cache) == []


def test_a_network_that_drops_packets_times_out(own_cache, monkeypatch):
  with socket.socket() as silent:  # accepts connections (the kernel does), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    monkeypatch.setattr(pretrained, "TIMEOUT_SECONDS", 0.5)
    monkeypatch.setenv(pretrained.REPO_ENV, f"http://127.0.0.1:{silent.getsockname()[1]}/models.zip")
    with pytest.raises(pretrained.ModelRepoError, match=r"cannot download .* \(timed out\)"):
      pretrained.fetch("M4")


def test_proxies_come_from_the_environment(server, small_release, monkeypatch):
  serve(server, small_release[0])
  for name in ("no_proxy", "NO_PROXY"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("http_proxy", server.url)
  monkeypatch.setenv(pretrained.REPO_ENV, "http://models.example/models.zip")  # resolvable by the proxy only
  same_files(pretrained.fetch("M4"), small_release[1] / "baseline_stereo")
  assert server.requests[0][0] == "http://models.example/models.zip"


def test_local_folder_of_extracted_models_is_used_in_place(small_release, tmp_path, own_cache, monkeypatch):
  mirror = tmp_path / "usb" / "checkpoints"
  shutil.copytree(small_release[1], mirror)
  monkeypatch.setenv(pretrained.REPO_ENV, str(tmp_path / "usb"))
  assert pretrained.fetch("M6") == str(mirror / "full_multi_instrument")
  assert not (own_cache / "full_multi_instrument").exists()


@pytest.mark.parametrize("given", ["folder", "zip"])
def test_local_copy_of_the_archive_is_extracted_into_the_cache(given, small_release, tmp_path, own_cache, monkeypatch):
  (tmp_path / "usb").mkdir()
  copy = tmp_path / "usb" / "models.zip"
  copy.write_bytes(small_release[0].read_bytes())
  monkeypatch.setenv(pretrained.REPO_ENV, str(copy if given == "zip" else copy.parent))
  folder = pretrained.fetch("full_44KHz")
  assert folder == str(own_cache / "full_44KHz")
  same_files(folder, small_release[1] / "full_44KHz")
  assert copy.exists() and not (own_cache / "models.zip").exists()  # the user's copy is read where it is


def test_local_folder_without_the_models_says_what_it_lacks(tmp_path, monkeypatch):
  monkeypatch.setenv(pretrained.REPO_ENV, str(tmp_path))
  with pytest.raises(pretrained.ModelRepoError, match="holds neither models.zip nor a folder baseline_stereo/"):
    pretrained.fetch("M4")
  monkeypatch.setenv(pretrained.REPO_ENV, str(tmp_path / "nothing.zip"))
  with pytest.raises(pretrained.ModelRepoError, match="nothing.zip .*: no such file or folder"):
    pretrained.fetch("M4")


def test_a_checkpoint_that_is_not_the_presets_is_refused_and_removed(server, tmp_path, own_cache):
  # The variables of another model under M4's folder name: no sha256 to check, so the variables decide.
  shutil.copytree(ORIGINAL_TF1 / "tiny_m5", tmp_path / "release" / "baseline_stereo")
  serve(server, zip_folders(tmp_path / "models.zip", tmp_path / "release"))
  from wave_unet_tf.model_sources import load_model
  with pytest.raises(ValueError) as error:
    load_model("M4")
  message = str(error.value)
  assert message.startswith("M4: ") and "not the released M4 checkpoint, removed from the cache" in message
  assert "separator/conv1d/kernel" in message  # the converter's check names the variable
  assert cache_files(own_cache) == []


def test_separate_command_offline_with_an_empty_cache_is_one_line(tmp_path):
  soundfile.write(tmp_path / "song.wav", np.zeros((4410, 2), np.float32), 44100)
  url = f"http://127.0.0.1:{closed_port()}/models.zip"
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", f"--output_dir={tmp_path / 'out'}",
                           str(tmp_path / "song.wav")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, pretrained.REPO_ENV: url})
  assert result.returncode == 1 and "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "error: M5-HighSR: cannot download " + url in lines[0]
  assert "WAVE_UNET_MODEL_REPO" in lines[0] and "--model PATH" in lines[0]
  assert not (tmp_path / "out" / "song").exists()


def _checkpoint_values(prefix):
  from wave_unet_tf.conversion.tf1_checkpoint import read_checkpoint
  return read_checkpoint(prefix)


def _assert_weights(model, prefix, preset):
  from wave_unet_tf.conversion.tf1_checkpoint import original_variables
  values = _checkpoint_values(prefix)
  weights = {w.path: w.numpy() for w in model.weights}
  for original, _, keras_name in original_variables(get_preset(preset)):
    np.testing.assert_array_equal(weights[keras_name], values[original], err_msg=keras_name)


@pytest.mark.slow  # a full-size model converted and run by the real command
def test_separate_without_model_uses_m5_highsr_fetched_once(released_archive, server, own_cache, tmp_path):
  import wave_unet_tf as wut

  archive, prefixes = released_archive
  url = serve(server, archive)
  song = np.random.default_rng(5).uniform(-0.3, 0.3, (44100, 2)).astype(np.float32)
  soundfile.write(tmp_path / "song.wav", song, 44100)
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", "--output_dir", str(tmp_path / "out"),
                           str(tmp_path / "song.wav")], capture_output=True, text=True,
                          env={**os.environ, pretrained.REPO_ENV: url})
  assert result.returncode == 0, result.stderr
  assert_quiet(result.stdout, result.stderr)
  assert f"sha256 {sha256(archive)}" in result.stderr and "extracted full_44KHz/" in result.stderr
  assert "preset M5-HighSR; converting it once" in result.stderr
  assert len(server.requests) == 1
  server.close()  # the second run needs no network

  vocals, rate = soundfile.read(tmp_path / "out" / "song" / "vocals.wav", dtype="float32")
  model = wut.load_model("full_44KHz")  # the original's name: the same model, from the cache the command filled
  assert model.wave_unet_config == get_preset("M5-HighSR") and rate == 44100
  _assert_weights(model, prefixes["M5-HighSR"], "M5-HighSR")
  # Random full-size weights drive the outputs to full scale, where the streamed and the in-memory graphs'
  # float32 rounding differs by up to ~2e-4.
  np.testing.assert_allclose(vocals, wut.Separator(model).separate(song, 44100)["vocals"], atol=5e-4)


def test_models_command_fetches_ahead_and_every_name_means_its_folder_and_preset(server, small_release, own_cache,
                                                                                  monkeypatch):
  from wave_unet_tf import model_cache
  from wave_unet_tf.model_sources import load_model

  url = serve(server, small_release[0])
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.models", "--download=M4,full_multi_instrument,M6",
                           "--noconvert", f"--model_repo={url}"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != pretrained.REPO_ENV})
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == [f"M4: {own_cache / 'baseline_stereo'}",
                                        f"M6: {own_cache / 'full_multi_instrument'}"]
  assert len(server.requests) == 1
  server.close()  # M5-HighSR comes from the same archive: no request
  loaded = []
  monkeypatch.setattr(model_cache, "load_tf1_checkpoint", lambda folder, preset: loaded.append((folder, preset)))
  for name in catalogue.all_names():
    load_model(name)
  folders = {entry.name: str(own_cache / entry.folder) for entry in catalogue.ENTRIES}
  assert loaded == [(folders[n], n) for n in ("M5-HighSR", "M4", "M6", "M5-HighSR", "M4", "M6")]
