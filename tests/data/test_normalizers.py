"""Stain normalizers: Reinhard matches L*a*b* statistics, Macenko recovers stain vectors; fits round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from src.config import compose
from src.config.validate import validate
from src.data.normalizers import Macenko, Reinhard, from_fit, read_image
from src.data.normalizers.color import rgb_to_lab
from src.errors import ConfigError
from tests.conf_options import conf_normalizer, normalizers

TILES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tiles"
TARGET = TILES / "tissue-level0-4302-10273-4814-10785.png"
SOURCE = TILES / "low-nuclei-score-level0.png"
STAINED = TILES / "medium-nuclei-score-level1.png"  # redder than TARGET, little background
NORMALIZERS = normalizers()  # every conf/normalizer option that builds one (tests/conf_options.py)


@pytest.fixture(scope="module")
def real_tiles() -> tuple[torch.Tensor, torch.Tensor]:
    if not (TARGET.exists() and SOURCE.exists()):
        pytest.skip(f"real H&E tiles not found under {TILES}")
    return read_image(TARGET), read_image(SOURCE)


def lab_stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lab = rgb_to_lab(image.reshape(3, -1).T.float() / 255)
    return lab.mean(0), lab.std(0, unbiased=False)


def test_lab_conversion_known_values() -> None:
    lab = rgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    expected = torch.tensor([[100.0, 0.0, 0.0], [53.24, 80.09, 67.20], [32.30, 79.19, -107.86]])
    torch.testing.assert_close(lab, expected, atol=0.05, rtol=0)


def test_reinhard_output_matches_the_target_lab_statistics(real_tiles) -> None:
    # (On mostly-white tiles, clipping to the RGB gamut shrinks the sds a little: this tile has little background.)
    target, source = real_tiles[0], read_image(STAINED)
    normalizer = Reinhard(source=str(TARGET)).fit_source(lambda i: None, 0)
    target_mean, target_sd = lab_stats(target)
    source_mean, source_sd = lab_stats(source)
    assert (source_mean - target_mean).abs().max() > 5 or (source_sd - target_sd).abs().max() > 5
    out_mean, out_sd = lab_stats(normalizer(source))
    torch.testing.assert_close(out_mean, target_mean, atol=0.3, rtol=0)
    torch.testing.assert_close(out_sd, target_sd, atol=0.3, rtol=0)


# Typical H&E stain vectors (the reference of Macenko's reference implementation). Macenko, like Slideflow's
# and the reference code, ignores pixels with any channel below beta OD, so very faint pure-eosin pixels
# would not count; these vectors keep most pure-stain pixels above it.
H = torch.tensor([0.5626, 0.7201, 0.4062])
E = torch.tensor([0.2159, 0.8012, 0.5581])


def two_stain_image(size: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic H&E image: pure-H, pure-E, mixed and background pixels. Returns (image, concentrations)."""
    g = torch.Generator().manual_seed(seed)
    n = size * size
    conc = torch.rand(n, 2, generator=g) * torch.tensor([1.2, 1.0]) + 0.4
    kind = torch.randint(0, 10, (n,), generator=g)
    conc[kind < 3, 1] = 0  # pure haematoxylin
    conc[(kind >= 3) & (kind < 6), 0] = 0  # pure eosin
    conc[kind == 9] = 0  # background
    stains = torch.stack([H / H.norm(), E / E.norm()], dim=1)
    od = conc @ stains.T
    image = (255 * torch.exp(-od)).round().clamp(0, 255).to(torch.uint8)
    return image.T.reshape(3, size, size), conc


def test_macenko_recovers_the_stain_vectors_of_a_synthetic_image() -> None:
    image, conc = two_stain_image()
    fit = Macenko().fit([image]).target
    recovered_h, recovered_e = fit["stain_matrix"][:, 0], fit["stain_matrix"][:, 1]
    assert torch.dot(recovered_h, H / H.norm()) > 0.995
    assert torch.dot(recovered_e, E / E.norm()) > 0.995
    torch.testing.assert_close(fit["max_conc"], torch.quantile(conc, 0.99, dim=0), rtol=0.05, atol=0)


def test_macenko_normalizes_a_real_tile_to_the_target(real_tiles) -> None:
    source = real_tiles[1]
    normalizer = Macenko(source=str(TARGET)).fit_source(lambda i: None, 0)
    wanted = normalizer.target
    before = Macenko().fit([source]).target
    assert ((before["max_conc"] - wanted["max_conc"]).abs() / wanted["max_conc"]).max() > 0.2
    after = Macenko().fit([normalizer(source)]).target
    cosines = (after["stain_matrix"] * wanted["stain_matrix"]).sum(0)
    assert cosines.min() > 0.999
    torch.testing.assert_close(after["max_conc"], wanted["max_conc"], rtol=0.05, atol=0)


def test_macenko_leaves_an_unstained_tile_alone() -> None:
    image, _ = two_stain_image()
    blank = torch.full((3, 32, 32), 245, dtype=torch.uint8)
    assert torch.equal(Macenko().fit([image])(blank), blank)


@pytest.mark.parametrize("option", NORMALIZERS)
def test_fit_on_sampled_training_tiles(option: str) -> None:
    tiles = [two_stain_image(32, seed)[0] for seed in range(10)]
    read = []
    normalizer = conf_normalizer(option, source="dataset", fit_tiles=4).fit_source(
        lambda i: read.append(i) or tiles[i], len(tiles), seed=3
    )
    assert len(read) == 4 == len(set(read))
    reference = conf_normalizer(option).fit([tiles[i] for i in read], seed=3)
    for key, value in normalizer.target.items():
        torch.testing.assert_close(value, reference.target[key])


@pytest.mark.parametrize("option", NORMALIZERS)
def test_saved_fit_rebuilds_the_same_normalizer(option: str) -> None:
    image, _ = two_stain_image(seed=1)
    other, _ = two_stain_image(seed=2)
    normalizer = conf_normalizer(option).fit([image])
    rebuilt = from_fit(normalizer.get_fit())
    assert type(rebuilt) is type(normalizer) and torch.equal(rebuilt(other), normalizer(other))


@pytest.mark.parametrize("option", NORMALIZERS)
def test_stain_augmentation_perturbs_the_target(option: str, real_tiles) -> None:
    target, source = real_tiles
    normalizer = conf_normalizer(option).fit([target])
    plain = normalizer(source)
    torch.manual_seed(0)
    first, second = normalizer(source, augment=True), normalizer(source, augment=True)
    assert not torch.equal(first, plain) and not torch.equal(first, second)
    still = conf_normalizer(option, augment_sd=0.0).fit([target])
    assert torch.equal(still(source, augment=True), plain)


def test_normalizer_options_compose_and_instantiate() -> None:
    assert not compose([]).normalizer  # none is the default
    assert isinstance(instantiate(compose(["normalizer=reinhard"]).normalizer), Reinhard)
    macenko = instantiate(compose(["normalizer=macenko", "normalizer.fit_tiles=8"]).normalizer)
    assert isinstance(macenko, Macenko) and macenko.fit_tiles == 8


def test_unknown_normalizer_is_rejected_with_the_choices() -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose(["normalizer=vahadane"])
    assert all(name in str(error.value) for name in ("none", "reinhard", "macenko"))


def test_missing_reference_tile_is_rejected_before_reading_data(tmp_path: Path) -> None:
    cfg = compose(["normalizer=reinhard", f"normalizer.source={tmp_path / 'missing.png'}"])
    with pytest.raises(ConfigError, match=r"normalizer\.source"):
        validate(cfg)


def test_a_fit_naming_a_foreign_class_is_refused_before_importing_it(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "evil_normalizer.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Evil: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tile = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fit = {**Reinhard().fit([tile]).get_fit(), "class": "evil_normalizer.Evil"}
    with pytest.raises(ValueError, match="not one of this workbench's normalizers"):
        from_fit(fit)
    assert not marker.exists(), "the module named by the fit was imported"
