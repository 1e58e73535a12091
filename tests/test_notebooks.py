"""The Colab notebooks: well-formed and committed clean (fast), and executed top to bottom on CPU with small
parameters through nbclient (slow). The tests add assignments to each notebook's ``parameters`` cell, as
papermill does, so the notebook's own code runs unchanged."""

import ast
import os
import pathlib
import sys

import pytest

from conftest import ORIGINAL_TF1, PROJECT_ROOT

nbformat = pytest.importorskip("nbformat")

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = ("01_separate_a_song.ipynb", "02_train_on_musdb.ipynb", "03_export_serving_tflite.ipynb",
             "04_fine_tune_on_your_own_stems.ipynb")
# The project's repository: the notebooks' set-up cells install from it and their Colab badges open it.
REPOSITORY = "https://github.com/wave-unet-tf/wave-unet-tf"
BADGE = REPOSITORY.replace("https://github.com/", "https://colab.research.google.com/github/") + "/blob/main/notebooks/{}"

# A model that trains in seconds (as tests/test_training.py's TINY): one epoch of 6 steps on 3 s toy songs.
TINY_TRAIN_FLAGS = ("--max_epochs=1 --steps_per_epoch=6 --num_layers=3 --num_initial_filters=4 --sample_rate=8000 "
                    "--num_frames=256 --batch_size=4 --max_validation_batches=2 --summary_every=1")
TOY = dict(toy_tracks=3, toy_seconds=3.0)


def read(name):
  return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def parameters_cell(notebook):
  cells = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
  assert len(cells) == 1, "one code cell tagged 'parameters'"
  assert cells[0].cell_type == "code"
  return cells[0]


def assigned_names(source):
  return {target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
          for target in node.targets if isinstance(target, ast.Name)}


def execute(name, directory, timeout=300, **parameters):
  """Runs notebook ``name`` in ``directory`` with ``parameters`` assigned after its parameters cell's own."""
  from nbclient import NotebookClient

  notebook = read(name)
  cell = parameters_cell(notebook)
  unknown = set(parameters) - assigned_names(cell.source)
  assert not unknown, f"{name} has no parameters {sorted(unknown)}"
  cell.source += "\n# injected by tests/test_notebooks.py\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
  # `!python`, `!wave-unet-*` and `!saved_model_cli` in the notebook: this interpreter's.
  env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
  NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                 resources={"metadata": {"path": str(directory)}}).execute(env=env)
  return notebook


def text_output(notebook):
  return "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                 for output in cell.get("outputs", []))


def setup_cell(notebook):
  return notebook.cells[1]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_names_the_repository_once_and_its_badge_opens_it(name):
  notebook = read(name)
  text = "".join(cell.source for cell in notebook.cells)
  assert text.count("github.com/") == text.count(REPOSITORY.split("//")[1]) + text.count("github.com/f90/")
  assert f'REPOSITORY = "{REPOSITORY}"' in setup_cell(notebook).source.splitlines()[1]
  assert text.count(REPOSITORY) == 1 and BADGE.format(name) in notebook.cells[0].source


@pytest.mark.slow
def test_setup_cell_installs_the_project_from_its_repository_where_nothing_is_installed(tmp_path):
  """The set-up cell as a fresh Colab runtime runs it: wave_unet_tf not importable, the repository cloned
  and pip-installed. The repository is this clone (file://); the virtual environment sees the site-packages
  of the Python running the tests (a system Python's, a venv's or a conda environment's) as a plain folder, so
  TensorFlow is there but the editable install of this checkout is not."""
  import site
  import subprocess
  import venv

  env_dir = tmp_path / "venv"
  venv.create(env_dir, with_pip=True)  # pip installs into the environment the kernel runs in
  python = env_dir / "bin" / "python"
  purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
  # A path line, not a site dir: the .pth files in it (this checkout's editable install) are not run.
  (pathlib.Path(purelib) / "machine.pth").write_text("\n".join(site.getsitepackages()) + "\n")
  # As if the fresh environment were activated: IPython adds the site-packages of $VIRTUAL_ENV, .pth files and
  # all, so the tests' own venv (and its editable install of this checkout) must not be named there.
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
  env.update(VIRTUAL_ENV=str(env_dir), PIP_NO_BUILD_ISOLATION="false", PIP_DISABLE_PIP_VERSION_CHECK="1",
             PATH=f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")

  source = setup_cell(read(NOTEBOOKS[0])).source.replace(REPOSITORY, f"file://{PROJECT_ROOT}")
  script = (f"from IPython.core.interactiveshell import InteractiveShell\n"
            f"shell = InteractiveShell.instance()\n"
            f"import importlib.util\n"
            f"print('before', importlib.util.find_spec('wave_unet_tf'))\n"
            f"result = shell.run_cell({source!r})\n"
            f"result.raise_error()\n"
            f"print('module', shell.user_ns['wut'].__file__)\n"
            f"print('project', shell.user_ns['PROJECT'])\n")
  result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  lines = dict(line.split(" ", 1) for line in result.stdout.splitlines()
               if line.startswith(("before", "module", "project")))
  assert lines["before"] == "None"  # nothing installed where the cell runs
  assert lines["module"].startswith(purelib)  # installed into the fresh environment, not this checkout
  assert lines["project"] == str(tmp_path / "wave-unet-tf") and (tmp_path / "wave-unet-tf" / "train.py").exists()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_with_badge_parameters_and_no_outputs(name):
  notebook = read(name)
  nbformat.validate(notebook)
  first = notebook.cells[0]
  assert first.cell_type == "markdown" and BADGE.format(name) in first.source
  cell = parameters_cell(notebook)
  assert "#@param" in cell.source and assigned_names(cell.source)
  assert all("#@param" not in c.source for c in notebook.cells if c is not cell), "form fields in one cell"
  for c in notebook.cells:
    if c.cell_type == "code":
      assert c.outputs == [] and c.execution_count is None, f"{name}: commit it without outputs"
  assert notebook.metadata.kernelspec.name == "python3"


@pytest.mark.slow
def test_separate_a_song_notebook_trains_a_model_and_separates_a_toy_song(tmp_path):
  notebook = execute("01_separate_a_song.ipynb", tmp_path, model_path="", listen_seconds=2,
                     train_flags=TINY_TRAIN_FLAGS, **TOY)
  # wave-unet-separate names the folder after the file: separated/mixture/ for the toy song's mixture.wav.
  assert sorted(os.listdir(tmp_path / "separated" / "mixture")) == ["accompaniment.wav", "vocals.wav"]
  images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
  audios = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "text/html" in o.get("data", {})
            and "<audio" in o["data"]["text/html"]]
  assert len(images) == 1 and len(audios) == 3  # mixture and two sources


@pytest.mark.slow
def test_separate_a_song_notebook_separates_with_m5_highsr_by_name(released_archive, tmp_path, monkeypatch):
  from released_models import Server

  server = Server(released_archive[0].parent)  # serves the release's models.zip
  monkeypatch.setenv("WAVE_UNET_MODEL_REPO", f"{server.url}/models.zip")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  try:
    notebook = execute("01_separate_a_song.ipynb", tmp_path, listen_seconds=2, **TOY)
  finally:
    server.close()
  assert parameters_cell(read("01_separate_a_song.ipynb")).source.startswith('model_path = "M5-HighSR"')
  assert sorted(os.listdir(tmp_path / "separated" / "mixture")) == ["accompaniment.wav", "vocals.wav"]
  assert len(server.requests) == 1
  assert (tmp_path / "cache" / "wave_unet_tf" / "models" / "released" / "full_44KHz").is_dir()
  assert "M5-HighSR (default)" in text_output(notebook)  # wave-unet-models' table


@pytest.mark.slow
def test_separate_a_song_notebook_converts_an_original_checkpoint(tmp_path):
  if not ORIGINAL_TF1.is_dir():
    pytest.fail(f"test fixtures not found at {ORIGINAL_TF1}")
  execute("01_separate_a_song.ipynb", tmp_path, listen_seconds=2, **TOY,
          tf1_checkpoint=str(ORIGINAL_TF1 / "tiny_m5"), tf1_config=str(ORIGINAL_TF1 / "tiny_m5" / "config.json"))
  assert (tmp_path / "converted.keras").is_file()
  assert not (tmp_path / "demo" / "quickstart").exists()  # a given model is not trained
  assert sorted(os.listdir(tmp_path / "separated" / "mixture")) == ["accompaniment.wav", "vocals.wav"]


@pytest.mark.slow
def test_a_failing_command_stops_the_notebook(tmp_path):
  from nbclient.exceptions import CellExecutionError
  with pytest.raises(CellExecutionError, match="exit status 1: wave-unet-separate"):
    execute("01_separate_a_song.ipynb", tmp_path, model_path="not_a_model.keras", **TOY)
  assert not (tmp_path / "separated" / "mixture").exists()


@pytest.mark.slow
def test_train_on_musdb_notebook_trains_evaluates_and_plots_per_track_sdr(tmp_path):
  notebook = execute("02_train_on_musdb.ipynb", tmp_path, train_flags=TINY_TRAIN_FLAGS, tensorboard=False, jobs=1,
                     **TOY)
  assert (tmp_path / "runs" / "notebook" / "best.keras").is_file()
  assert (tmp_path / "evaluation" / "test" / "Toy test 001 - Seed 0.json").is_file()
  assert (tmp_path / "evaluation" / "summary.csv").is_file()
  tables = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "text/html" in o.get("data", {})]
  assert any("Toy test 001 - Seed 0" in o["data"]["text/html"] for o in tables)


@pytest.mark.slow
def test_export_notebook_writes_and_runs_saved_model_and_every_tflite_variant(tmp_path):
  notebook = execute("03_export_serving_tflite.ipynb", tmp_path, train_flags=TINY_TRAIN_FLAGS, **TOY)
  assert (tmp_path / "exported" / "wave_unet" / "1" / "saved_model.pb").is_file()
  for quantize in ("none", "float16", "dynamic"):
    assert (tmp_path / "exported" / f"wave_unet_{quantize}.tflite").is_file()
  text = text_output(notebook)
  assert "signature_def['separate']" in text and "signature_def['serving_default']" in text
  site = tmp_path / "exported" / "site"  # the in-browser site (tests/test_browser.py runs one in Chromium)
  assert {"index.html", "manifest.json", "model.tflite", "stream.tflite", "litert"} <= {p.name for p in site.iterdir()}


@pytest.mark.slow
def test_fine_tune_notebook_adapts_a_model_to_new_sources_and_separates_them(tmp_path):
  """The notebook's own cells with a tiny local model in place of M5-HighSR (whose shapes the tiny recipe's
  flags could not change) and its example folder of speech/noise stems."""
  import keras
  import wave_unet_tf as wut
  from wave_unet_tf.model.saving import save_model
  keras.utils.set_random_seed(0)
  config = wut.get_preset("M5").replace(num_layers=3, num_initial_filters=4, sample_rate=8000, num_channels=1)
  save_model(wut.build_model(config), str(tmp_path / "pretrained.keras"))
  notebook = execute("04_fine_tune_on_your_own_stems.ipynb", tmp_path, init_from="pretrained.keras", freeze="down",
                     train_flags="--max_epochs=1 --steps_per_epoch=6 --num_frames=256 --batch_size=4 "
                                 "--max_validation_batches=2 --nofine_tune", listen_seconds=2, **TOY)
  tuned = wut.load_model(str(tmp_path / "runs" / "fine_tune"))
  assert tuned.wave_unet_config.source_names == ("speech", "noise")
  assert sorted(os.listdir(tmp_path / "separated" / "mixture")) == ["noise.wav", "speech.wav"]
  text = text_output(notebook)
  assert "the output convolution of speech starts fresh" in text and "frozen: down_conv_0" in text
  changed = next(line for line in text.splitlines() if line.startswith("layers that trained or started fresh:"))
  assert "down_conv" not in changed and "outputs/speech_conv" in changed and "up_conv_0" in changed
