"""The launchers of conf/hydra/launcher/ compose for train.py and the extraction, with a user's site file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from src.config import register_configs
from src.config.compose import CONFIG_DIR

SITE_FILE = """\
defaults:
  - slurm_gpu
partition: gpu
account: my_lab
qos: normal
setup: ["module load cuda/12.4", "source ~/venvs/workbench/bin/activate"]
"""


def _launcher(config_name: str, *overrides: str) -> dict:
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_the_gpu_node_launcher_asks_one_task_per_gpu_of_the_trainer() -> None:
    launcher = _launcher("train", "hydra/launcher=slurm_gpu", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == 4 and launcher["nodes"] == 2
    assert launcher["cpus_per_task"] is None and launcher["cpus_per_gpu"] == 8  # hydra#2231: not cpus_per_task
    assert launcher["partition"] is None and launcher["account"] is None  # the site's, not ours
    single = _launcher("train", "hydra/launcher=slurm_gpu", "trainer=gpu")
    assert single["tasks_per_node"] == single["gpus_per_node"] == 1 and single["nodes"] == 1


def test_a_site_file_in_a_config_dir_adds_partition_and_account(tmp_path: Path) -> None:
    (tmp_path / "hydra" / "launcher").mkdir(parents=True)
    (tmp_path / "hydra" / "launcher" / "my_cluster.yaml").write_text(SITE_FILE)
    launcher = _launcher(
        "train",
        f"hydra.searchpath=[file://{tmp_path}]",
        "hydra/launcher=my_cluster",
        "trainer=ddp",
        "trainer.devices=2",
    )
    assert launcher["partition"] == "gpu" and launcher["account"] == "my_lab" and launcher["qos"] == "normal"
    assert launcher["setup"][0] == "module load cuda/12.4"
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == 2


@pytest.mark.parametrize("config_name", ["train", "extract"])
def test_the_local_launcher_and_the_cpu_launcher_compose(config_name: str) -> None:
    assert _launcher(config_name, "hydra/launcher=local")["_target_"].endswith("LocalLauncher")
    cpu = _launcher(config_name, "hydra/launcher=slurm_cpu", *(["workers=16"] if config_name == "extract" else []))
    assert cpu["_target_"].endswith("SlurmLauncher") and cpu["gpus_per_node"] is None
    assert cpu["cpus_per_task"] == (16 if config_name == "extract" else 4)
