"""Every command's --help, however it is started (a console script as pip writes it, ``python -m``, ``python
train.py``): the command's usage text and its own flags with their help and defaults, in groups. (absl alone
lists the flags of the module it takes for the main one, which for a console script defines none.)"""

import ast
import configparser
import os
import re
import subprocess
import sys

from conftest import PROJECT_ROOT

# What pip writes for a console script.
WRAPPER = """import re
import sys
from {module} import {function}
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit({function}())
"""


def console_scripts():
  """``{command: (module, function)}`` from setup.cfg."""
  parser = configparser.ConfigParser()
  parser.read(PROJECT_ROOT / "setup.cfg")
  lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
  return {name.strip(): tuple(target.strip().split(":")) for name, target in (line.split("=") for line in lines)}


def module_source(module):
  return (PROJECT_ROOT / (module.replace(".", "/") + ".py")).read_text()


def defined_flags(source):
  """The flags a command module defines itself (``flags.DEFINE_*("name", ...)``, `cli.define_model_flags`)."""
  names = re.findall(r"flags\.DEFINE_\w+\(\s*\"(\w+)\"", source)
  if "define_model_flags(" in source:
    names += ["model", "model_repo"]
  if "define_model_repo_flag(" in source:
    names.append("model_repo")
  return names


def test_every_command_help_prints_its_usage_and_its_own_flags_however_started(tmp_path):
  scripts = console_scripts()
  assert {"wave-unet-separate", "wave-unet-train", "wave-unet-models"} <= set(scripts)
  runs = {}
  for name, (module, function) in scripts.items():
    (tmp_path / name).write_text(WRAPPER.format(module=module, function=function))
    runs[name] = [sys.executable, str(tmp_path / name), "--help"]
  runs["python train.py"] = [sys.executable, str(PROJECT_ROOT / "train.py"), "--help"]
  runs["python -m wave_unet_tf.separate"] = [sys.executable, "-m", "wave_unet_tf.separate", "--help"]
  # This checkout's package, installed or not (a console script's folder is not the project's).
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
  started = {name: subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    cwd=tmp_path, env=env) for name, command in runs.items()}
  outputs = {}
  for name, process in started.items():
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, f"{name}: {err}"
    outputs[name] = out
  for name, (module, _) in scripts.items():
    out, source = outputs[name], module_source(module)
    usage = ast.get_docstring(ast.parse(source)).splitlines()[0]
    assert out.splitlines()[0] == usage, name
    assert "Try --helpfull" not in out and out.rstrip().endswith("--helpfull also lists absl's own flags.")
    listed = dict(re.findall(r"^  --(?:\[no\])?(\w+): (\S.*)$", out, re.M))
    missing = [flag for flag in defined_flags(source) if flag not in listed]
    assert not missing, f"{name} --help lacks {missing}"
    if "model" in listed:
      assert "model_repo" in listed, f"{name}: every command with --model takes --model_repo"
      assert "M5-HighSR" in listed["model"]
  assert outputs["python -m wave_unet_tf.separate"] == outputs["wave-unet-separate"]
  separate = outputs["wave-unet-separate"]
  assert re.search(r"^Model:\n  --model: .*\n(?:      .*\n)*      \(default: M5-HighSR\)$", separate, re.M)
  for group in ("Input:", "Output:", "Speed and memory (never the result):", "Real-time streaming:"):
    assert f"\n{group}\n" in separate
  assert "  --codec: <wav|flac|ogg|mp3|m4a>: Output format.\n      (default: wav)" in separate
  train = outputs["python train.py"]
  assert train == outputs["wave-unet-train"] and train.startswith("wave-unet-train: train a Wave-U-Net preset")
  for flag in ("--preset:", "--musdb_root:", "--model_dir:", "--num_layers:", "--[no]fine_tune:", "--strategy:"):
    assert f"\n  {flag}" in train
  assert "\nConfig fields (default: the preset's):\n" in train
  assert "(required)" in outputs["wave-unet-evaluate"] and "--download:" in outputs["wave-unet-models"]
