"""A misspelt key under any ``_target_`` node is refused before any tile is extracted, naming the key, the target
and the names it accepts (one case per kind of node that conf/ ships)."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.commands.extract import run as extract
from src.config import compose
from src.config.signatures import check_signatures, node_problems, target_nodes
from src.errors import ConfigError
from src.models.backbone import timm_keywords
from src.pipeline import run

MIL = ["dataset=features", "encoder=tiny_random"]

# node kind -> (overrides, the last one adding a misspelt key; its target; a name the target accepts)
MISSPELT = {
    "tile_model": (["+model.hidden_layer_widht=64"], "src.models.tilenet.TileNet", "hidden_layer_width"),
    "mil_model": (
        [*MIL, "model=attention_mil", "+model.hiden_width=256"],
        "src.models.mil.attention_mil.AttentionMIL",
        "hidden_width",
    ),
    # timm_backbone hands keys it does not name to timm: checked against the timm model class (timm_keywords)
    "timm_backbone": (
        ["+model.backbone.trainable_layer=2"],
        "src.models.backbone.timm_backbone",
        "trainable_layers",
    ),
    "backbone": (["model=custom_example", "+model.backbone.widht=8"], "src.models.examples.small_cnn", "width"),
    "loss_fn": (["+loss.fn.label_smothing=0.1"], "src.losses.categorical.CrossEntropy", "label_smoothing"),
    "partial_loss_fn": (["loss=custom_example", "+loss.fn.gama=1"], "src.losses.examples.focal_loss", "gamma"),
    "per_outcome_loss_fn": (
        ["experiment=demo_multi_outcome", "+loss.per_outcome.tumor_cellularity.fn.nme=mse"],
        "src.losses.linear.LinearLoss",
        "name",
    ),
    "normalizer": (["normalizer=macenko", "+normalizer.alpah=1"], "src.data.normalizers.Macenko", "alpha"),
    "normalizer_base": (
        ["normalizer=reinhard", "+normalizer.fit_tile=8"],
        "src.data.normalizers.Reinhard",
        "fit_tiles",
    ),
    "augment": (["+augment.jpeg_pp=0.5"], "src.data.augment.Augment", "jpeg_p"),
    "encoder": (
        [*MIL, "model=attention_mil", "+encoder.num_feature=64"],
        "src.features.encoders.Encoder",
        "num_features",
    ),
    "encoder_model": (
        [*MIL, "model=attention_mil", "+encoder.model.sed=1"],
        "src.features.encoders.tiny_random_encoder",
        "seed",
    ),
    "feature_bags": (
        [*MIL, "model=attention_mil", "+dataset.bags.batchsize=8"],
        "src.features.bags.FeatureBags",
        "batch_size",
    ),
    "tile_source": (["+dataset.tile_source.max_open_file=8"], "src.data.sources.shards.ShardSource", "max_open_files"),
    "datamodule": (["+dataset.datamodule.wher=x"], "src.data.datamodule.FoldDataModule", "where"),
    "module": (
        [*MIL, "model=attention_mil", "+dataset.module.scheduler_intervall=step"],
        "src.training.mil_module.MilModule",
        "scheduler_interval",
    ),
    "logger": (["logger=csv", "+logger.csv.save_dirr=x"], "pytorch_lightning.loggers.CSVLogger", "save_dir"),
    "callback": (
        ["callbacks=early_stop", "+callbacks.early_stop.patiense=2"],
        "pytorch_lightning.callbacks.EarlyStopping",
        "patience",
    ),
    "optimizer": (["+optimizer.weight_decy=0.1"], "torch.optim.Adam", "weight_decay"),
    "scheduler": (["scheduler=cosine", "+scheduler.fn.etamin=0.1"], "src.optim.schedulers.cosine", "eta_min"),
    "splitter": (["+validation.splitter.kk=3"], "src.data.splits.KFold", "k"),
    "trainer": (["+trainer.max_epoch=3"], "pytorch_lightning.Trainer", "max_epochs"),
    "progress": (["+progress.every_n_step=5"], "src.training.progress.PlainProgress", "every_n_steps"),
    "demo_project": (["+project.demo.n_patient=4"], "src.demo.generate.DemoProject", "n_patients"),
}


def message_of(key: str, target: str, accepted: str) -> str:
    """What the error must say: the key, the target, the nearest accepted name (suggested) and the accepted names."""
    name = key.rsplit(".", 1)[-1]
    return rf"{key}: {target} takes no argument '{name}' \(did you mean '{accepted}'\?\); it takes .*\b{accepted}\b"


@pytest.mark.parametrize("kind", list(MISSPELT))
def test_a_misspelt_key_is_refused_before_any_tile_is_extracted(kind: str, tiny_cfg, tmp_path: Path) -> None:
    overrides, target, accepted = MISSPELT[kind]
    key = overrides[-1].lstrip("+").split("=")[0]
    shards = tmp_path / "shards"
    cfg = tiny_cfg(f"project.shards_dir={shards}", f"run_dir={tmp_path / 'run'}", *overrides)
    with pytest.raises(ConfigError, match=message_of(key, target, accepted)):
        run(cfg)  # train.py's entry, in-process
    assert not shards.exists(), "tiles were extracted before the misspelt key was caught"
    assert not (tmp_path / "run").exists(), "the run folder was written before the misspelt key was caught"


def test_extraction_refuses_a_misspelt_key_of_the_demo_project(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    overrides = [f"paths.data_dir={tmp_path / 'data'}", f"project.shards_dir={shards}", "+project.demo.sead=1"]
    cfg = compose(overrides, "extract")
    with pytest.raises(ConfigError, match=message_of("project.demo.sead", "src.demo.generate.DemoProject", "seed")):
        extract(cfg)  # what extract.py runs
    assert list(tmp_path.iterdir()) == [], "extraction wrote something before the misspelt key was caught"


def test_every_misspelt_key_is_named_at_once() -> None:
    cfg = compose(["+model.hidden_layer_widht=64", "+optimizer.weight_decy=0.1"])
    with pytest.raises(ConfigError) as caught:
        check_signatures(cfg)
    assert "model.hidden_layer_widht" in str(caught.value) and "optimizer.weight_decy" in str(caught.value)


def test_a_target_that_cannot_be_imported_is_named() -> None:
    assert node_problems("model.backbone", {"_target_": "src.models.no_such_module.fn"}) == [
        "model.backbone._target_='src.models.no_such_module.fn' cannot be imported: AttributeError: module "
        "'src.models' has no attribute 'no_such_module'"
    ]


def test_keyword_targets_and_partials_accept_what_their_signature_allows() -> None:
    assert node_problems("logger.wandb", {"_target_": "pytorch_lightning.loggers.WandbLogger", "anything": 1}) == []
    ddp = {"_target_": "pytorch_lightning.strategies.DDPStrategy", "find_unused_parameters": True}
    assert node_problems("trainer.strategy", ddp) == []  # its **kwargs go to DistributedDataParallel
    timm = {"_target_": "src.models.backbone.timm_backbone", "name": "resnet18", "drop_path_rate": 0.1}
    assert node_problems("model.backbone", timm) == []  # its **kwargs go to timm.create_model
    # a partial's later call supplies the rest: the required arguments need not be in the node
    assert node_problems("optimizer", {"_target_": "torch.optim.SGD", "_partial_": True, "momentum": 0.9}) == []
    assert node_problems("x", {"_target_": "builtins.divmod", "_args_": [1, 2, 3]})[0].startswith(
        "x: builtins.divmod cannot take these arguments"
    )


def test_keywords_handed_to_the_parent_class_are_the_parents_names() -> None:
    macenko = {"_target_": "src.data.normalizers.Macenko", "alpha": 1.0, "fit_tiles": 8, "source": "dataset"}
    assert node_problems("normalizer", macenko) == []  # Macenko(alpha, ..., **kwargs) -> Normalizer(source, ...)
    assert (
        "takes no argument 'fit_tile' (did you mean 'fit_tiles'?)"
        in node_problems("normalizer", {"_target_": "src.data.normalizers.Macenko", "fit_tile": 8})[0]
    )


def test_nodes_are_found_nested_in_lists_and_not_through_interpolations() -> None:
    tree = {
        "_target_": "a.A",
        "b": {"_target_": "b.B", "_recursive_": False, "c": [{"_target_": "c.C"}]},
        "d": "${encoder}",
        "e": {"_target_": "${x}"},
    }
    assert [key for key, _ in target_nodes(tree, "m")] == ["m", "m.b", "m.b.c[0]"]


def test_hydra_settings_are_not_checked() -> None:
    check_signatures({"hydra": {"launcher": {"_target_": "no.such.Launcher", "anything": 1}}})


def test_a_timm_backbone_takes_the_arguments_of_its_timm_model() -> None:
    """Keys timm_backbone hands on to timm pass when the timm model class takes them (and only then)."""
    check_signatures(compose(["+model.backbone.drop_path_rate=0.1", "+model.backbone.in_chans=3"]))
    check_signatures(compose(["model=resnet18", "+model.backbone.zero_init_last=false"]))  # ResNet's own argument
    with pytest.raises(ConfigError, match=r"model\.backbone\.zero_init_lats: .*did you mean 'zero_init_last'"):
        check_signatures(compose(["model=resnet18", "+model.backbone.zero_init_lats=false"]))
    for name in ("model_name", "num_classes", "global_pool"):  # timm_backbone sets these itself
        assert name not in timm_keywords({"name": "resnet18"})
    assert timm_keywords({"name": "no_such_model"}) is None  # the build names an unknown model
