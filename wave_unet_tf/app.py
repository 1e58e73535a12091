r"""wave-unet-app: a local web page that separates songs: upload, press Separate, listen to and download each stem.

  pip install -e ".[app]"
  wave-unet-app --model checkpoints/M5-HighSR.keras        # prints its address, http://127.0.0.1:7860/

In a notebook, ``wut.app.launch()`` shows the page inline (in Colab through Colab's own proxy, no public link).

The page runs `Separator.separate_file` with the command's `OutputOptions` and file names, so each stem is the
file ``wave-unet-separate`` writes with the same options, and the zip holds them as the command lays them out
(``{track}/{stem}.{ext}``). It binds 127.0.0.1 unless told otherwise, sends no analytics, loads nothing from
other sites and makes a public link only when asked (``--share``). Uploads and stems live in one temporary
folder: a session keeps only its latest separation, its files go when its page is closed, and the folder goes
when the app stops.

This is the only module that imports Gradio (the extra ``[app]``), and only when a page is built.
"""

import atexit
import dataclasses
import errno
import html
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import zipfile
from typing import Dict, List, Optional, Sequence

from wave_unet_tf import catalogue
from wave_unet_tf.separation import outputs

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 500.0
TITLE = "Wave-U-Net"
_DEFAULT = "default"  # the page's word for an option left to the command's default
_NO_TWO_STEMS = "off"
# System fonts: the default theme would fetch its fonts from Google.
_FONTS = dict(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
_CSS = ".wut-error { color: #b91c1c; font-weight: 600; margin: 0.25em 0; } .wut-song h3 { margin: 0.4em 0 0; }"


def _import_gradio():
  os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when Gradio is imported
  os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
  try:
    import gradio
  except ImportError:
    raise RuntimeError("the web page needs Gradio: pip install 'wave-unet-tf[app]' (or pip install 'gradio>=6,<7')") \
        from None
  return gradio


class Models:
  """The page's model choices (the launch model, then the catalogue's names) and their separators, each loaded
  once, on first use. Only these names reach `Separator`: the page never loads a path typed into it."""

  def __init__(self, launch_model: Optional[str] = None, **separator_options):
    self.default = os.fspath(launch_model) if launch_model else catalogue.DEFAULT_MODEL
    self.choices = tuple(dict.fromkeys((self.default, *catalogue.NAMES)))
    self._separator_options = separator_options
    self._loaded = {}
    self._lock = threading.Lock()

  def label(self, choice: str) -> str:
    """What the page calls a model: a name, or a file's or folder's own name."""
    return os.path.basename(os.path.normpath(choice)) or choice if os.path.exists(choice) else choice

  def separator(self, choice: str):
    if choice not in self.choices:
      raise ValueError(f"model {choice!r}: not one of this page's models ({', '.join(self.choices)})")
    with self._lock:
      if choice not in self._loaded:
        from wave_unet_tf.separation import Separator
        self._loaded[choice] = Separator(choice, **self._separator_options)
      return self._loaded[choice]

  def source_names(self, choice: str) -> Sequence[str]:
    """The model's sources; a catalogue name not loaded yet is read from its preset instead of downloaded."""
    if choice not in self._loaded and catalogue.is_name(choice):
      from wave_unet_tf.config import get_preset
      try:
        return get_preset(choice).source_names
      except ValueError:
        pass
    return self.separator(choice).source_names


class Workspace:
  """The app's temporary folder: ``uploads/`` (where Gradio keeps uploads) and ``sessions/<session>/<run>/``
  (a separation's stems, download names and zip). Bounded: a session keeps its latest run only, and its
  files go when it ends."""

  def __init__(self, root: Optional[str] = None):
    self.owns_root = root is None or not os.path.exists(root)
    self.root = os.path.abspath(root or tempfile.mkdtemp(prefix="wave-unet-app-"))
    self.uploads = os.path.join(self.root, "uploads")
    self.sessions = os.path.join(self.root, "sessions")
    for folder in (self.uploads, self.sessions):
      os.makedirs(folder, exist_ok=True)
    self._uploads_by_session: Dict[str, set] = {}
    self._runs = 0
    self._lock = threading.Lock()

  def _session_folder(self, session: str) -> str:
    return os.path.join(self.sessions, re.sub(r"[^A-Za-z0-9_-]", "_", session or "anonymous"))

  def new_run(self, session: str) -> str:
    with self._lock:
      self._runs += 1
      folder = os.path.join(self._session_folder(session), f"run{self._runs}")
    os.makedirs(folder)
    return folder

  def keep_only(self, run_folder: str):
    """Removes the session's earlier runs (their players are gone from the page)."""
    session_folder = os.path.dirname(run_folder)
    for name in os.listdir(session_folder):
      if os.path.join(session_folder, name) != run_folder:
        shutil.rmtree(os.path.join(session_folder, name), ignore_errors=True)

  def note_uploads(self, session: str, paths: Sequence[str]):
    with self._lock:
      self._uploads_by_session.setdefault(session, set()).update(
          os.path.abspath(p) for p in paths or () if _is_inside(p, self.uploads))

  def end_session(self, session: str):
    """The session's page is closed: its stems and uploads go."""
    shutil.rmtree(self._session_folder(session), ignore_errors=True)
    with self._lock:
      uploads = self._uploads_by_session.pop(session, set())
    for path in uploads:
      _remove_file_and_empty_folder(path, self.uploads)
    self._remove_stray_temporaries()

  def _remove_stray_temporaries(self, older_than_seconds=60):
    """Empty ``tmp*`` files Gradio may leave in the upload folder; an upload in progress starts as one too, so
    only those left untouched for a minute go."""
    now = time.time()
    for entry in os.scandir(self.uploads):
      try:
        if entry.name.startswith("tmp") and entry.is_file(follow_symlinks=False) and \
            entry.stat().st_size == 0 and now - entry.stat().st_mtime > older_than_seconds:
          os.remove(entry.path)
      except OSError:
        continue

  def close(self):
    for folder in (self.sessions, self.uploads):
      shutil.rmtree(folder, ignore_errors=True)
    if self.owns_root:
      shutil.rmtree(self.root, ignore_errors=True)


def _is_inside(path, folder):
  return os.path.abspath(path).startswith(os.path.abspath(folder) + os.sep)


def _remove_file_and_empty_folder(path, top):
  try:
    os.remove(path)
  except OSError:
    return
  folder = os.path.dirname(path)
  if folder != top and _is_inside(folder, top) and not os.listdir(folder):
    os.rmdir(folder)


@dataclasses.dataclass
class Song:
  """One upload's result: its stems (``{stem: path}``, in the command's layout), their download copies named
  ``<track> - <stem>.<ext>``, or the command's one-line error."""
  name: str
  track: str
  stems: Dict[str, str] = dataclasses.field(default_factory=dict)
  downloads: Dict[str, str] = dataclasses.field(default_factory=dict)
  error: Optional[str] = None
  seconds: float = 0.0


def page_options(codec, bit_depth=_DEFAULT, bitrate="", clip=_DEFAULT, stems=None, two_stems=_NO_TWO_STEMS,
                 source_names=()) -> outputs.OutputOptions:
  """The page's choices as the command's `OutputOptions` (its errors name the command's flags)."""
  chosen = None
  if two_stems in (None, _NO_TWO_STEMS, ""):
    two_stems = None
    if stems is not None:
      if not stems:
        raise ValueError("--stems: choose at least one stem")
      if set(stems) != set(source_names):
        chosen = tuple(s for s in source_names if s in stems) + tuple(s for s in stems if s not in source_names)
  return outputs.OutputOptions(stems=chosen, two_stems=two_stems, codec=codec,
                               bit_depth=None if bit_depth in (None, _DEFAULT, "") else bit_depth,
                               bitrate=(bitrate or "").strip() or None, clip=None if clip in (None, _DEFAULT) else clip)


def separate_uploads(separator, uploads: Sequence[str], run_folder: str, options: outputs.OutputOptions,
                     progress=None):
  """Separates each upload into ``run_folder/separated`` as ``wave-unet-separate --output_dir`` would; yields
  one `Song` per upload as it finishes (a failed one carries the command's error, naming the file by its
  uploaded name). ``progress(seconds done, seconds in all or None, song name, index)`` while each separates."""
  import soundfile

  from wave_unet_tf.audio import AudioError
  from wave_unet_tf.separation.separator import track_name
  output_dir, downloads = os.path.join(run_folder, "separated"), os.path.join(run_folder, "downloads")
  os.makedirs(downloads, exist_ok=True)
  tracks = set()
  for index, path in enumerate(uploads):
    name = os.path.basename(path)
    track = _unique(track_name(name), tracks)
    song = Song(name=name, track=track)
    try:
      total = soundfile.info(path).duration
    except Exception:  # ffmpeg's formats have no cheap length; the separation says what is wrong with the file
      total = None
    report = (lambda seconds, total=total, name=name, index=index: progress(seconds, total, name, index)) \
        if progress else None
    try:
      song.stems, seconds = separator.separate_file(path, output_dir, options=options, track=track, progress=report)
      song.seconds = seconds or 0.0
      for stem, stem_path in song.stems.items():
        song.downloads[stem] = _link(stem_path, os.path.join(downloads, f"{track} - {stem}.{options.codec}"))
    except (AudioError, ValueError, OSError, RuntimeError) as e:
      song.stems, song.downloads = {}, {}
      song.error = " ".join(str(e).replace(os.path.abspath(path), name).replace(path, name).split()) \
          or type(e).__name__
    yield song


def _unique(track, taken):
  """Two uploads of one name get their own folders: ``song``, ``song (2)``, ..."""
  candidate, number = track, 1
  while candidate in taken:
    number += 1
    candidate = f"{track} ({number})"
  taken.add(candidate)
  return candidate


def _link(path, link):
  """``link`` naming the same bytes as ``path`` (a hard link, or a copy where links are refused)."""
  try:
    os.link(path, link)
  except OSError:
    shutil.copyfile(path, link)
  return link


def zip_stems(songs: Sequence[Song], run_folder: str) -> Optional[str]:
  """One zip of every stem, laid out as the command's ``--output_dir`` (``{track}/{stem}.{ext}``)."""
  done = [song for song in songs if song.stems]
  if not done:
    return None
  path = os.path.join(run_folder, f"{done[0].track}.zip" if len(done) == 1 else "separated.zip")
  output_dir = os.path.join(run_folder, "separated")
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:  # audio does not compress
    for song in done:
      for stem_path in song.stems.values():
        archive.write(stem_path, os.path.relpath(stem_path, output_dir))
  return path


def _summary(songs: List[Song], total: int) -> str:
  lines = []
  for song in songs:
    if song.error:
      lines.append(f'<p class="wut-error">error: {html.escape(song.error)}</p>')
    else:
      lines.append(f"<p>{html.escape(song.name)}: {len(song.stems)} stems, {song.seconds:.1f} s of audio</p>")
  failed = sum(1 for song in songs if song.error)
  if total > 1 and len(songs) == total:
    lines.append(f"<p>{total - failed} separated, {failed} failed</p>")
  return "\n".join(lines)


def build_page(models: Models, workspace: Workspace, browser_link: bool = False):
  """The page as a ``gradio.Blocks``: songs, model and output options, Separate; then per song its stems.
  ``browser_link``: a link to the launch model's in-browser page (`wave_unet_tf.web.app_page`)."""
  gr = _import_gradio()
  codecs = list(outputs.CODECS)
  first_sources = list(models.source_names(models.default))

  def stem_choices(choice):
    sources = list(models.source_names(choice))
    return (gr.CheckboxGroup(choices=sources, value=sources),
            gr.Dropdown(choices=_two_stem_choices(sources), value=_NO_TWO_STEMS))

  def note_uploads(files, request: gr.Request):
    workspace.note_uploads(request.session_hash, _upload_paths(files))

  def separate(files, choice, stems, two_stems, codec, bit_depth, bitrate, clip, request: gr.Request,
               progress=gr.Progress()):
    hidden_zip = gr.DownloadButton(visible=False, value=None)
    files = _upload_paths(files)
    if not files:
      yield [], '<p class="wut-error">error: add one or more songs first</p>', hidden_zip
      return
    workspace.note_uploads(request.session_hash, files)
    try:
      progress(None, desc=f"Loading {choice}")
      separator = models.separator(choice)
      options = page_options(codec, bit_depth, bitrate, clip, stems, two_stems, separator.source_names)
      options.stem_sources(separator.source_names)  # a stem the model lacks: said before any work
    except (ValueError, OSError, RuntimeError) as e:
      yield [], f'<p class="wut-error">error: {html.escape(" ".join(str(e).split()))}</p>', hidden_zip
      return
    run_folder = workspace.new_run(request.session_hash)

    def report(seconds, total, name, index):
      progress((round(seconds, 1), None if total is None else round(total, 1)),
               desc=f"{name} ({index + 1} of {len(files)})", unit="s")

    songs = []
    for song in separate_uploads(separator, files, run_folder, options, progress=report):
      songs.append(song)
      _log(song)
      yield [dataclasses.asdict(s) for s in songs], _summary(songs, len(files)), hidden_zip
    archive = zip_stems(songs, run_folder)
    workspace.keep_only(run_folder)
    zip_button = gr.DownloadButton(f"Download all stems ({os.path.basename(archive)})", value=archive,
                                   visible=True) if archive else hidden_zip
    yield [dataclasses.asdict(s) for s in songs], _summary(songs, len(files)), zip_button

  def end_session(request: gr.Request):
    workspace.end_session(request.session_hash)

  with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(600, 3600)) as page:
    gr.Markdown(f"# {TITLE}: separate a song into its sources\nDrop one or more songs (any format ffmpeg reads), "
                "choose what you want and press **Separate**. Each stem can be played and downloaded.")
    if browser_link:
      gr.HTML(f'<p id="wut-browser">Or <a href="browser/" target="_blank">separate in your browser</a>: '
              f'{html.escape(models.label(models.default))} runs on your own machine, files and live audio, nothing '
              f'uploaded.</p>')
    with gr.Row():
      with gr.Column(scale=3):
        files = gr.File(label="Songs", file_count="multiple", type="filepath", elem_id="wut-files")
      with gr.Column(scale=2):
        model = gr.Dropdown(choices=[(models.label(c), c) for c in models.choices], value=models.default,
                            label="Model", allow_custom_value=False, elem_id="wut-model")
        stems = gr.CheckboxGroup(choices=first_sources, value=first_sources, label="Stems", elem_id="wut-stems")
        two_stems = gr.Dropdown(choices=_two_stem_choices(first_sources), value=_NO_TWO_STEMS, label="Two stems",
                                info="A source and no_<source>, the sum of the others (e.g. an instrumental)",
                                elem_id="wut-two-stems")
        codec = gr.Dropdown(choices=codecs, value=outputs.OutputOptions.codec, label="Format", elem_id="wut-codec")
        with gr.Accordion("More output options", open=False):
          bit_depth = gr.Dropdown(choices=[_DEFAULT, "16", "24", "32"], value=_DEFAULT, label="Bit depth",
                                  info="wav: 32 (float) by default; flac: 16")
          bitrate = gr.Textbox(label="Bitrate", placeholder="e.g. 192k (ogg, mp3, m4a; default: high-quality VBR)")
          clip = gr.Dropdown(choices=[_DEFAULT, *outputs.CLIP_MODES], value=_DEFAULT, label="Beyond full scale",
                             info="clamp, or keep the samples (float wav and lossy codecs)")
    button = gr.Button("Separate", variant="primary", elem_id="wut-separate")
    status = gr.HTML(elem_id="wut-status")
    songs = gr.State([])
    zip_button = gr.DownloadButton("Download all stems", visible=False, elem_id="wut-zip")

    @gr.render(inputs=songs)
    def show(songs):
      for index, song in enumerate(songs or ()):
        with gr.Column(elem_classes="wut-song"):
          gr.HTML(f"<h3>{html.escape(song['name'])}</h3>")
          if song["error"]:
            gr.HTML(f'<p class="wut-error">error: {html.escape(song["error"])}</p>')
          for stem, path in song["stems"].items():
            with gr.Row(equal_height=False):
              gr.Audio(path, label=f"{song['track']}: {stem}", interactive=False, buttons=["download"], scale=4,
                       elem_classes="wut-stem")
              gr.DownloadButton(f"Download {os.path.basename(song['downloads'][stem])}",
                                value=song["downloads"][stem], scale=1, elem_classes="wut-download")

    model.change(stem_choices, inputs=model, outputs=[stems, two_stems])
    # preprocess=False: the uploads' paths are read from the payload (`_upload_paths`); the other inputs'
    # payloads are their values already.
    files.upload(note_uploads, inputs=files, queue=False, show_progress="hidden", preprocess=False)
    button.click(separate, inputs=[files, model, stems, two_stems, codec, bit_depth, bitrate, clip],
                 outputs=[songs, status, zip_button], concurrency_limit=1, preprocess=False)
    page.unload(end_session)
  return page


def _upload_paths(payload) -> List[str]:
  """The uploads' paths from a ``gradio.File``'s payload as its events receive it with ``preprocess=False``:
  Gradio's own reading (``type="filepath"``) leaves an empty temporary file in the upload folder for every file
  of every event, so the page's events take the payload as it is."""
  if payload is None:
    return []
  items = payload if isinstance(payload, (list, tuple)) else [payload]
  paths = []
  for item in items:
    path = item.get("path") if isinstance(item, dict) else getattr(item, "path", item)
    if path:
      paths.append(os.fspath(path))
  return paths


def _two_stem_choices(sources):
  return [("off", _NO_TWO_STEMS)] + [(f"{s} and no_{s}", s) for s in sources]


def _log(song: Song):
  if song.error:
    print(f"wave-unet-app: error: {song.error}", file=sys.stderr, flush=True)
  else:
    print(f"{song.name} -> {', '.join(song.stems)} ({song.seconds:.1f} s of audio)", flush=True)


@dataclasses.dataclass
class App:
  """A running page: ``url`` (and ``share_url`` with ``share``); ``close()`` stops it and removes its files."""
  page: object
  workspace: Workspace
  url: str
  share_url: Optional[str] = None
  browser: Optional[object] = None  # the in-browser page (wave_unet_tf.web.app_page.BrowserPage)

  def close(self):
    try:
      self.page.close()
    finally:
      self.workspace.close()
      if self.browser is not None:
        self.browser.close()


def launch(model: Optional[str] = None, *, host: str = DEFAULT_HOST, port: Optional[int] = None, share: bool = False,
           max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, temp_dir: Optional[str] = None, inline: Optional[bool] = None,
           browser_page: bool = True, **separator_options) -> App:
  """Starts the page and returns at once; in a notebook it shows inline (Colab: through Colab's proxy).

  Args:
    model: the page's first model (any source `wave_unet_tf.load_model` takes; default the catalogue's
      default); the catalogue's names are offered too. Loaded before the page starts, so a bad one is said here.
    host: the address to bind (127.0.0.1: this machine only; 0.0.0.0: every network interface).
    port: the port (default 7860, or the next free one).
    share: also make a public link through Gradio's tunnel (needs the internet).
    max_upload_mb: the largest file the page takes, in MB (2**20 bytes).
    temp_dir: where uploads and stems are kept while served (default: a new temporary folder).
    inline: show the page in the notebook (default: when running in one).
    browser_page: also serve the model's in-browser page at ``browser/`` (``wave-unet-export --web``, built in
      the background; needs LiteRT.js, which scripts/install.sh installs), linked from the page.
    **separator_options: `Separator`'s ``window_seconds``, ``batch_size``, ``jit_compile``.
  """
  workspace = Workspace(temp_dir)
  try:
    os.environ["GRADIO_TEMP_DIR"] = workspace.uploads  # read when components are made
    gr = _import_gradio()
    models = Models(model, **separator_options)
    models.separator(models.default)
    from wave_unet_tf.web import app_page
    browser_page = browser_page and app_page.available()
    page = build_page(models, workspace, browser_link=browser_page)
    gr.set_static_paths([workspace.sessions])  # stems are served from where they were written, not copied
    page.queue(default_concurrency_limit=1)
    try:
      server, url, share_url = page.launch(
          server_name=host, server_port=port, share=share, inline=inline, prevent_thread_lock=True, quiet=True,
          max_file_size=int(max_upload_mb * 2**20), ssr_mode=False, footer_links=[], show_error=False,
          theme=gr.themes.Default(**_FONTS), css=_CSS)
    except OSError as e:
      if port and "Cannot find empty port" in str(e):
        raise OSError(f"--port={port}: in use by another program on {host}; choose another port") from None
      raise
    browser = app_page.mount(server, models.default) if browser_page else None
  except BaseException:
    workspace.close()
    raise
  atexit.register(workspace.close)  # a notebook's kernel that stops without page.close() leaves no files
  if browser is not None:
    atexit.register(browser.close)
  return App(page, workspace, url, share_url, browser)


def _define_flags():
  from absl import flags

  from wave_unet_tf import cli
  from wave_unet_tf.runtime import DEVICES
  from wave_unet_tf.separation.separator import DEFAULT_BATCH_SIZE
  flags.DEFINE_string("model", None, f"The page's first model: a name of the catalogue ({', '.join(catalogue.NAMES)}"
                      f"; default {catalogue.DEFAULT_MODEL}), a .keras file, a SavedModel folder, a .tflite file, a "
                      "training --model_dir, an original TF1 checkpoint, or an http(s):// or hf:// URL of one. The "
                      "page offers it and the catalogue's names.")
  cli.define_model_repo_flag()
  flags.DEFINE_string("host", DEFAULT_HOST, "The address to listen on (127.0.0.1: this machine only; 0.0.0.0: "
                      "every network interface).")
  flags.DEFINE_integer("port", DEFAULT_PORT, "The port to listen on.", lower_bound=0, upper_bound=65535)
  flags.DEFINE_bool("share", False, "Also make a public link through Gradio's tunnel (needs the internet).")
  flags.DEFINE_float("max_upload_mb", DEFAULT_MAX_UPLOAD_MB, "The largest file the page takes, in MB (2**20 bytes).")
  flags.DEFINE_string("temp_dir", None, "Where uploads and stems are kept while served (default: a new temporary "
                      "folder, removed when the app stops).")
  flags.DEFINE_bool("browser_page", True, "Also serve the model's in-browser page (separation on the listener's own "
                    "machine, wave-unet-export --web) at browser/, linked from the page.")
  flags.DEFINE_string("device", "auto", f"Where the model runs: {DEVICES} (auto: a GPU if there is one).")
  flags.DEFINE_float("window_seconds", None, "Output audio per forward pass, in seconds (default: 30 on a CPU; on a "
                     "GPU, sized to its free memory).")
  flags.DEFINE_integer("batch_size", DEFAULT_BATCH_SIZE, "Windows per forward pass.", lower_bound=1)
  flags.DEFINE_bool("jit_compile", True, "Compile the forward pass with XLA.")
  flags.DEFINE_string("compile_cache", cli.DEFAULT_COMPILE_CACHE, "Folder keeping XLA-compiled forward passes "
                      "between runs ('' for none).")


def main(argv):
  from absl import flags

  from wave_unet_tf import cli
  values = flags.FLAGS
  if argv[1:]:
    raise cli.UsageError(f"unexpected argument {argv[1]!r}: songs are given on the page")
  if values.max_upload_mb <= 0:
    raise cli.UsageError(f"--max_upload_mb={values.max_upload_mb}: must be positive")
  if values.window_seconds is not None and values.window_seconds <= 0:
    raise cli.UsageError(f"--window_seconds={values.window_seconds}: must be positive")
  if values.temp_dir and os.path.exists(values.temp_dir) and not os.path.isdir(values.temp_dir):
    raise cli.UsageError(f"--temp_dir={values.temp_dir}: not a folder")
  _check_port_free(values.host, values.port)  # before the model loads, not after
  cli.start_tensorflow(values.compile_cache if values.jit_compile else None)
  from wave_unet_tf.runtime import use_device
  use_device(values.device)
  app = launch(values.model, host=values.host, port=values.port, share=values.share,
               max_upload_mb=values.max_upload_mb, temp_dir=values.temp_dir, inline=False,
               browser_page=values.browser_page,
               window_seconds=values.window_seconds, batch_size=values.batch_size, jit_compile=values.jit_compile)
  stopped = threading.Event()
  signal.signal(signal.SIGTERM, lambda *_: stopped.set())
  print(f"wave-unet-app: serving on {app.url} (Ctrl+C stops it)", flush=True)
  if app.share_url:
    print(f"wave-unet-app: public link {app.share_url}", flush=True)
  try:
    while not stopped.wait(1.0):
      pass
  except KeyboardInterrupt:
    pass
  finally:
    app.close()
  print("wave-unet-app: stopped", flush=True)


def _check_port_free(host, port):
  import socket
  if not port:
    return
  try:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
      probe.bind((host, port))
  except OSError as e:
    if e.errno == errno.EADDRINUSE:
      raise OSError(f"--port={port}: in use by another program on {host}; choose another port") from None
    raise OSError(f"--host={host} --port={port}: cannot listen there ({e.strerror or e})") from None


HELP_GROUPS = (
    ("Model", ("model", "model_repo", "device")),
    ("Page", ("host", "port", "share", "max_upload_mb", "temp_dir", "browser_page")),
    ("Speed and memory (never the result)", ("window_seconds", "batch_size", "jit_compile", "compile_cache")),
)


def run():
  from wave_unet_tf import cli
  _define_flags()
  cli.run(main, HELP_GROUPS)


if __name__ == "__main__":
  run()
