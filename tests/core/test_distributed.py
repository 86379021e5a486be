"""core/distributed.py: a job that does not train runs without DeepSpeed below ZeRO-3
(transformers refuses ZeRO inference there: "ZeRO inference only makes sense with ZeRO Stage 3").
The real 2-process run is in tests/launchers/test_equivalence.py (the deepspeed column)."""

from __future__ import annotations

import json
from pathlib import Path

from tx.core import distributed
from tx.core.deepspeed_config import preset_path


def test_zero_stage_of_presets_files_and_dicts(tmp_path: Path) -> None:
    assert distributed.zero_stage(str(preset_path("zero2"))) == 2
    assert distributed.zero_stage(str(preset_path("zero3"))) == 3
    config = tmp_path / "ds.json"
    config.write_text(json.dumps({"train_batch_size": "auto"}))
    assert distributed.zero_stage(config) == 0  # no zero_optimization: stage 0
    assert distributed.zero_stage({"zero_optimization": {"stage": 1}}) == 1
    assert distributed.zero_stage(str(tmp_path / "missing.json")) is None
    assert distributed.zero_stage({"zero_optimization": {"stage": "auto"}}) is None


def test_evaluation_without_training_drops_deepspeed_below_stage_3() -> None:
    args = {"output_dir": "/o", "deepspeed": "/z2.json", "do_eval": True, "do_predict": True}
    out, notes = distributed.evaluation_without_zero(args, 2)
    assert "deepspeed" not in out and out["do_eval"] is True and args["deepspeed"] == "/z2.json"
    assert len(notes) == 1 and "without DeepSpeed" in notes[0] and "ZeRO stage 2" in notes[0]
    # training, ZeRO-3 (sharded weights), an unknown stage or no DeepSpeed: unchanged
    for given, stage in (({**args, "do_train": True}, 2), (args, 3), (args, None), ({"do_eval": True}, 2)):
        assert distributed.evaluation_without_zero(given, stage) == (given, [])
