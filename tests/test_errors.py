"""One-line errors and the shared did-you-mean hint of both stages."""

from __future__ import annotations

from livercad.errors import InputError, did_you_mean


def test_did_you_mean_picks_the_fewest_edits_and_stays_quiet_when_nothing_is_close() -> None:
    assert did_you_mean("resnet35", ["resnet50", "resnet34"]) == "did you mean 'resnet34'? "
    assert did_you_mean("froze", ["scratch", "frozen", "finetune", "partial:1"]) == "did you mean 'frozen'? "
    assert did_you_mean("mask_crop", ["full", "mask", "crop", "mask-crop"]) == "did you mean 'mask-crop'? "
    assert did_you_mean("qqqq", ["resnet50"]) == ""


def test_input_error_is_one_line_naming_the_file() -> None:
    assert str(InputError("a.nii.gz", "expected\n a 3-D volume")) == "a.nii.gz: expected a 3-D volume"
