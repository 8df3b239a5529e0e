"""One name per config concept (rlsurvey.config_compat): every renamed field still answers to its old name,
with a FutureWarning, in the constructor, as an attribute, in dataclasses.replace, in saved configs and on
the command line; the old names are no fields; and every trainer config checks its values when it is made."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
import typing
import warnings
from pathlib import Path

import pytest
import torch

from rlsurvey import cli
from rlsurvey.algos.dpo_trainer import DPOConfig
from rlsurvey.algos.grpo import GRPOConfig, dr_grpo_config
from rlsurvey.algos.iterative_dpo import IterativeDPOConfig
from rlsurvey.algos.rlhf_ppo import RLHFPPOConfig
from rlsurvey.algos.rloo import rloo_config
from rlsurvey.algos.safe_rlhf import LagrangeMultiplier
from rlsurvey.algos.self_rewarding import SelfRewardingConfig
from rlsurvey.algos.sft import SFTConfig
from rlsurvey.config_args import option_name
from rlsurvey.config_compat import load_config, renamed_fields, renamed_names, translate
from rlsurvey.lm.pretrain import PretrainConfig
from rlsurvey.rewards.bradley_terry import RewardTrainingConfig
from rlsurvey.rl.policy_gradient import PGConfig
from rlsurvey.rl.ppo import PPOConfig, clipped_policy_loss, clipped_value_loss

# (config, old name, new name, a valid value other than the default)
RENAMES = [
    (GRPOConfig, "checkpoint_dir", "output_dir", "runs/x"),
    (GRPOConfig, "epochs", "epochs_per_rollout", 3),
    (GRPOConfig, "minibatch_size", "mini_batch_size", 4),
    (GRPOConfig, "eval_every", "eval_steps", 5),
    (RLHFPPOConfig, "ppo_epochs", "epochs_per_rollout", 3),
    (RLHFPPOConfig, "adam_eps", "adam_epsilon", 1e-6),
    (RLHFPPOConfig, "target_kl", "kl_target", 0.5),
    (RLHFPPOConfig, "cliprange", "clip_eps", 0.3),
    (RLHFPPOConfig, "cliprange_value", "clip_eps_value", 0.4),
    (PPOConfig, "num_minibatches", "num_mini_batches", 4),
    (PPOConfig, "update_epochs", "epochs_per_rollout", 3),
    (PPOConfig, "adam_eps", "adam_epsilon", 1e-6),
    (PPOConfig, "gae_lambda", "lam", 0.8),
    (PPOConfig, "clip_coef", "clip_eps", 0.3),
    (PPOConfig, "clip_coef_vf", "clip_eps_value", 0.4),
    (PGConfig, "lr", "learning_rate", 3e-3),
    (PGConfig, "value_lr", "value_learning_rate", 3e-3),
    (PretrainConfig, "lr", "learning_rate", 1e-3),
    (PretrainConfig, "warmup", "warmup_steps", 7),
    (PretrainConfig, "grad_clip", "max_grad_norm", 0.5),
    (PretrainConfig, "eval_every", "eval_steps", 9),
    (RewardTrainingConfig, "epochs", "num_epochs", 3),
    (SelfRewardingConfig, "min_score_gap", "min_reward_gap", 0.5),
    (LagrangeMultiplier, "lr", "learning_rate", 0.3),
]
IDS = [f"{cls.__name__}.{old}" for cls, old, _, _ in RENAMES]

# every trainer config of the package
TRAINER_CONFIGS = [
    GRPOConfig, RLHFPPOConfig, SFTConfig, DPOConfig, RewardTrainingConfig, PPOConfig, PGConfig,
    PretrainConfig, IterativeDPOConfig, SelfRewardingConfig,
]  # fmt: skip


def _renamed(old: str, new: str) -> str:
    return f"`{old}` is renamed `{new}`; the old name will be removed"


def test_the_table_covers_every_renamed_field():
    classes = {cls for cls, *_ in RENAMES}
    declared = {(cls, old, new) for cls in classes for old, new in renamed_names(cls).items()}
    assert declared == {(cls, old, new) for cls, old, new, _ in RENAMES}
    for cls in TRAINER_CONFIGS:
        if cls not in classes:
            assert renamed_names(cls) == {}, cls


@pytest.mark.parametrize("cls, old, new, value", RENAMES, ids=IDS)
def test_old_keyword_works_and_warns(cls, old, new, value):
    with pytest.warns(FutureWarning, match=_renamed(old, new)) as record:
        cfg = cls(**{old: value})
    assert getattr(cfg, new) == value
    assert cfg == cls(**{new: value})
    assert record[0].filename == __file__  # the warning points at the caller's line


@pytest.mark.parametrize("cls, old, new, value", RENAMES, ids=IDS)
def test_old_attribute_reads_and_writes_with_a_warning(cls, old, new, value):
    cfg, default = cls(**{new: value}), getattr(cls(), new)
    with pytest.warns(FutureWarning, match=_renamed(old, new)):
        assert getattr(cfg, old) == value
    with pytest.warns(FutureWarning, match=_renamed(old, new)):
        setattr(cfg, old, default)
    assert getattr(cfg, new) == default
    assert old not in vars(cfg)  # never a second attribute that training would silently ignore


@pytest.mark.parametrize("cls, old, new, value", RENAMES, ids=IDS)
def test_old_and_new_together_raise(cls, old, new, value):
    with pytest.raises(TypeError, match=f"both `{old}` .* and `{new}`; pass only `{new}`"):
        cls(**{old: value, new: value})
    base = cls()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before anything is warned
        with pytest.raises(TypeError, match="pass only"):
            dataclasses.replace(base, **{old: value, new: value})


@pytest.mark.parametrize("cls, old, new, value", RENAMES, ids=IDS)
def test_fields_asdict_and_signature_know_only_the_new_names(cls, old, new, value):
    names = {f.name for f in dataclasses.fields(cls)}
    assert new in names and old not in names
    cfg = cls(**{new: value})
    assert new in dataclasses.asdict(cfg) and old not in dataclasses.asdict(cfg)
    assert not re.search(rf"\b{old}=", repr(cfg))
    params = inspect.signature(cls).parameters
    assert new in params and old not in params


@pytest.mark.parametrize("cls, old, new, value", RENAMES, ids=IDS)
def test_replace_takes_the_old_name(cls, old, new, value):
    base = cls()
    with pytest.warns(FutureWarning, match=_renamed(old, new)):
        cfg = dataclasses.replace(base, **{old: value})
    assert getattr(cfg, new) == value
    # every other field is the original's
    for f in dataclasses.fields(cls):
        if f.name != new:
            assert getattr(cfg, f.name) == getattr(base, f.name), f.name


@pytest.mark.parametrize("cls, old, new, value", RENAMES, ids=IDS)
def test_an_old_saved_config_loads(cls, old, new, value, tmp_path):
    cfg = cls(**{new: value})
    saved = json.loads(json.dumps(dataclasses.asdict(cfg)))  # as train_config.json or trainer_state.json
    saved[old] = saved.pop(new)
    with pytest.warns(FutureWarning, match=_renamed(old, new)):
        assert load_config(cls, saved) == cfg
    (tmp_path / "train_config.json").write_text(json.dumps({"command": "train x", "config": saved}))
    with pytest.warns(FutureWarning, match=_renamed(old, new)):
        assert load_config(cls, tmp_path / "train_config.json") == cfg
    checkpoint = tmp_path / "checkpoint-3"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"step": 3, "config": saved, "history": []}))
    with pytest.warns(FutureWarning, match=_renamed(old, new)):
        assert load_config(cls, checkpoint) == cfg


def test_load_config_restores_tuples_and_nested_configs_and_refuses_unknown_names():
    sft = SFTConfig(adam_betas=(0.8, 0.9))
    assert load_config(SFTConfig, json.loads(json.dumps(dataclasses.asdict(sft)))) == sft
    it = IterativeDPOConfig(dpo=DPOConfig(beta=0.3, adam_betas=(0.5, 0.6)))
    loaded = load_config(IterativeDPOConfig, json.loads(json.dumps(dataclasses.asdict(it))))
    assert loaded == it and isinstance(loaded.dpo, DPOConfig)
    with pytest.raises(TypeError, match="nonsense"):
        load_config(GRPOConfig, {"nonsense": 1})
    with pytest.warns(FutureWarning, match=_renamed("epochs", "epochs_per_rollout")):
        assert load_config(GRPOConfig, {}, epochs=2).epochs_per_rollout == 2


def test_presets_and_helpers_take_old_names():
    with pytest.warns(FutureWarning, match=_renamed("epochs", "epochs_per_rollout")):
        assert rloo_config(epochs=2).epochs_per_rollout == 2
    with pytest.warns(FutureWarning, match=_renamed("minibatch_size", "mini_batch_size")):
        assert dr_grpo_config(minibatch_size=8).mini_batch_size == 8
    with pytest.warns(FutureWarning, match=_renamed("lr", "learning_rate")):
        assert PretrainConfig.for_world("arithmetic", lr=1e-3).learning_rate == 1e-3
    with pytest.raises(TypeError, match="pass only"):
        translate(GRPOConfig, {"epochs": 2, "epochs_per_rollout": 3})


def test_renamed_function_arguments():
    logp, old, adv = torch.tensor([0.3, -0.2]), torch.zeros(2), torch.tensor([1.0, -1.0])
    want = clipped_policy_loss(logp, old, adv, clip_eps=0.1)[0]
    with pytest.warns(FutureWarning, match=_renamed("clip_coef", "clip_eps")):
        assert clipped_policy_loss(logp, old, adv, clip_coef=0.1)[0] == want
    with pytest.warns(FutureWarning, match=_renamed("clip_coef", "clip_eps")):
        clipped_value_loss(logp, old, adv, clip_coef=0.1)
    with pytest.raises(TypeError, match="pass only `clip_eps`"):
        clipped_policy_loss(logp, old, adv, clip_coef=0.1, clip_eps=0.1)


def test_renamed_fields_refuses_mistakes():
    @dataclasses.dataclass
    class C:
        a: int = 1

    with pytest.raises(TypeError, match="not a field"):
        renamed_fields(b="nope")(C)
    with pytest.raises(TypeError, match="still a field"):
        renamed_fields(a="a")(C)


# ----------------------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------------------

CLI_RENAMES = [
    (name, old, new, value)
    for name, cmd in cli._commands().items()
    for cls, old, new, value in RENAMES
    if cls is cmd.config and new not in cli.BOUND
]


def test_the_command_line_binds_output_dir_alone():
    assert cli.BOUND == {"seed": "--seed", "output_dir": "--output-dir"}
    args = cli.build_parser().parse_args(["train", "grpo", "--output-dir", "out"])
    cfg = cli._config(cli._commands()["grpo"], args, True, Path("out"))
    assert cfg.output_dir == "out"


@pytest.mark.parametrize("name, old, new, value", CLI_RENAMES, ids=[f"{c[0]}.{c[1]}" for c in CLI_RENAMES])
def test_cli_has_the_new_option_and_the_old_one_warns(name, old, new, value, capsys):
    parser = cli.build_parser()
    base = ["train", name, "--output-dir", "out"]
    args = parser.parse_args([*base, option_name(new), str(value)])
    assert getattr(args, new) == value and not hasattr(args, old)
    with pytest.warns(FutureWarning, match=f"`{option_name(old)}` is renamed `{option_name(new)}`"):
        args = parser.parse_args([*base, option_name(old), str(value)])
    assert getattr(args, new) == value
    assert getattr(parser.parse_args(base), new) == getattr(cli._commands()[name].defaults(), new)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", name, "--help"])
    shown = capsys.readouterr().out
    assert option_name(new) in shown and f"{option_name(old)} " not in shown


def test_cli_options_cover_the_renamed_fields_of_every_command():
    got = {(name, old) for name, old, _, _ in CLI_RENAMES}
    assert ("grpo", "epochs") in got and ("ppo", "cliprange") in got and ("reward", "epochs") in got
    assert ("rloo", "minibatch_size") in got and ("ppo", "target_kl") in got


# ----------------------------------------------------------------------------------------------------------
# Every trainer config checks its values when it is made
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, bad",
    [
        (GRPOConfig, {"steps": 0}),  # accepted until train_grpo called validate(), before __post_init__
        (GRPOConfig, {"top_p": 1.5}),
        (GRPOConfig, {"epochs_per_rollout": 0}),
        (GRPOConfig, {"temperature": 0.0}),
        (RLHFPPOConfig, {"clip_eps": 0.0}),
        (RLHFPPOConfig, {"kl_target": -1.0}),
        (SFTConfig, {"adam_epsilon": 0.0}),
        (DPOConfig, {"num_epochs": 0.0}),
        (RewardTrainingConfig, {"num_epochs": 0}),
        (PPOConfig, {"clip_eps_value": -0.1}),
        (PPOConfig, {"vf_coef": -1.0}),
        (PGConfig, {"learning_rate": 0.0}),
        (PretrainConfig, {"max_grad_norm": 0.0}),
        (PretrainConfig, {"warmup_steps": -1}),
        (IterativeDPOConfig, {"max_new_tokens": 0}),
        (SelfRewardingConfig, {"rounds": 0}),
        (SelfRewardingConfig, {"samples_per_prompt": 1}),
    ],
    ids=lambda x: x.__name__ if isinstance(x, type) else next(iter(x)),
)
def test_a_bad_value_fails_at_construction(cls, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        cls(**bad)


def _float_fields(cls) -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        if args == [float]:
            out.append(f.name)
    return out


@pytest.mark.parametrize("cls", TRAINER_CONFIGS, ids=lambda c: c.__name__)
def test_every_trainer_config_refuses_nan_in_every_float_field(cls):
    """check_fields refuses a non-finite float whatever its limit: every config calls it at construction."""
    fields = _float_fields(cls)
    assert fields, cls
    for name in fields:
        with pytest.raises(ValueError, match=name):
            cls(**{name: math.nan})


def test_validate_stays_callable_for_a_config_changed_after_it_was_made():
    cfg = GRPOConfig()
    cfg.validate()
    cfg.steps = 0
    with pytest.raises(ValueError, match="steps"):
        cfg.validate()
