"""Each augmentation letter acts as Slideflow names it; unknown letters are rejected before any data is read."""

from __future__ import annotations

import random
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torchvision.io import decode_jpeg, encode_jpeg

from src.config import compose
from src.data.augment import AUGMENT_CODES, Augment, gaussian_blur, parse_codes
from src.data.normalizers import read_image
from src.pipeline import run

TILE = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tiles" / "tissue-level0-4302-10273-4814-10785.png"
)


@pytest.fixture(scope="module")
def tile() -> torch.Tensor:
    """A real H&E tile (64x64 crop) when available, else a random one."""
    if TILE.exists():
        return read_image(TILE)[:, 100:164, 200:264].contiguous()
    return torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def outputs(augment: Augment, image: torch.Tensor, n: int = 64) -> list[torch.Tensor]:
    random.seed(0)
    torch.manual_seed(0)
    return [augment(image) for _ in range(n)]


def distinct(images: list[torch.Tensor], candidates: list[torch.Tensor]) -> set[int]:
    """Index of the candidate each image equals (every image must equal one)."""
    found = set()
    for image in images:
        matches = [i for i, c in enumerate(candidates) if torch.equal(image, c)]
        assert matches, "augmentation produced something other than the expected transforms"
        found.add(matches[0])
    return found


def test_x_flips_horizontally(tile) -> None:
    assert distinct(outputs(Augment("x"), tile), [tile, tile.flip(-1)]) == {0, 1}


def test_y_flips_vertically(tile) -> None:
    assert distinct(outputs(Augment("y"), tile), [tile, tile.flip(-2)]) == {0, 1}


def test_r_rotates_by_right_angles(tile) -> None:
    rotations = [torch.rot90(tile, k, dims=(-2, -1)) for k in range(4)]
    assert distinct(outputs(Augment("r"), tile), rotations) == {0, 1, 2, 3}


def test_j_recompresses_as_jpeg(tile) -> None:
    candidates = [decode_jpeg(encode_jpeg(tile, quality=q)) for q in range(50, 101)]
    images = outputs(Augment("j", jpeg_p=1.0), tile, n=16)
    assert len(distinct(images, candidates)) > 1  # random quality in 50-100
    assert all(not torch.equal(image, tile) for image in images)


def high_frequency_energy(image: torch.Tensor) -> float:
    """Mean squared Laplacian response of the grey image."""
    grey = image.float().mean(0)
    laplacian = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float((laplacian**2).mean())


def test_b_blur_grows_with_sigma(tile) -> None:
    energies = [high_frequency_energy(tile)] + [high_frequency_energy(gaussian_blur(tile, s)) for s in (0.5, 1, 1.5, 2)]
    assert all(a > 1.1 * b for a, b in pairwise(energies))  # strictly and clearly decreasing
    blurred = outputs(Augment("b", blur_p=1.0, blur_sigmas=[2.0]), tile, n=2)
    assert all(torch.equal(image, gaussian_blur(tile, 2.0)) for image in blurred)
    assert all(torch.equal(image, tile) for image in outputs(Augment("b", blur_p=0.0), tile, n=4))


def test_d_jitters_colours(tile) -> None:
    images = outputs(Augment("d", jitter=0.2), tile, n=8)
    assert all((image.float() - tile.float()).abs().mean() > 0.5 for image in images)
    assert all(torch.equal(image, tile) for image in outputs(Augment("d", jitter=0.0), tile, n=4))


def test_no_codes_is_identity(tile) -> None:
    assert all(torch.equal(image, tile) for image in outputs(Augment(""), tile, n=4))


def test_string_list_and_true_forms() -> None:
    assert instantiate(compose(["augment.codes=xyrjb"]).augment).codes == "xyrjb"
    assert instantiate(compose(["augment.codes=[x,y]"]).augment).codes == "xy"
    assert instantiate(compose(["augment.codes=true"]).augment).codes == "xyrjb"  # Slideflow's augment=True
    assert instantiate(compose(["augment=none"]).augment).codes == ""
    assert parse_codes(None) == parse_codes(False) == ""


def test_unknown_letter_is_rejected_at_composition_with_the_valid_letters() -> None:
    with pytest.raises(ValueError, match="Unknown augmentation code") as error:
        compose(["augment.codes=xyq"])
    assert "'q'" in str(error.value) and all(f"'{c}'" in str(error.value) for c in AUGMENT_CODES)


def test_stain_augmentation_needs_a_normalizer() -> None:
    with pytest.raises(ValueError, match="normalizer"):
        compose(["augment.codes=xyn"])
    assert compose(["augment.codes=xyn", "normalizer=reinhard"]).augment.codes == "xyn"


def test_pipeline_rejects_an_unknown_letter_before_reading_data(tmp_path: Path) -> None:
    """The path of `python train.py augment.codes=...`: run() checks the codes before anything else."""
    data_dir = tmp_path / "data"
    cfg = compose([f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path}"])
    cfg.augment.codes = "xyz"  # as if composed without src.config.compose's check
    with pytest.raises(ValueError, match=r"Unknown augmentation code\(s\) \['z'\]"):
        run(cfg)
    assert not data_dir.exists()  # no demo generated, no tile read
