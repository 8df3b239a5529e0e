"""`rlsurvey` given bad input, as a careless or hostile user would: every number of every trainer's config,
paths that are not there, broken dataset files, prompts longer than the model's context, a full disk.

Each refusal is one line on stderr (`rlsurvey: <option, file or row>: <what was expected>`), a non-zero
exit, no model loaded and nothing written to or changed in the output directory; `--debug` shows the
traceback instead."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import resource
import subprocess
import sys
import typing
from pathlib import Path

import datasets
import pytest
import torch

from rlsurvey import cli
from rlsurvey.algos.dpo_trainer import DPOConfig, DPOTrainer, _Tokenized
from rlsurvey.algos.grpo import GRPOConfig
from rlsurvey.algos.rlhf_ppo import RLHFPPOConfig
from rlsurvey.algos.rloo import rloo_config
from rlsurvey.checks import FieldError
from rlsurvey.cli_checks import InputError
from rlsurvey.config_args import _unwrap_optional, option_name
from rlsurvey.rewards.bradley_terry import RewardTrainingConfig
from rlsurvey.rewards.reward_model import RewardModel
from tests.conftest import tiny_causal_lm

LONG = 100_000  # characters of the over-long prompt


@pytest.fixture(scope="module")
def parser():
    return cli.build_parser()


@pytest.fixture
def no_loading(monkeypatch, parser):
    """Fails the test if a model (policy or reward model) is loaded; reuses one parser (quicker)."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("rlsurvey.lm.models.load_model", refuse)
    monkeypatch.setattr(RewardModel, "from_pretrained", classmethod(lambda cls, *a, **k: refuse(*a)))
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    yield calls
    assert not calls


def _snapshot(path: Path):
    """Every file and directory under `path` with its size and modification time; None when absent."""
    if not path.exists():
        return None
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")} | {
        ".": path.stat().st_mtime_ns
    }


def _refused(argv, out: Path, *needles: str) -> str:
    """Run the CLI in-process; it must exit with one line naming `needles` and leave `out` as it was."""
    before = _snapshot(out)
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in argv] + ["--output-dir", str(out)])
    msg = exc.value.code
    assert isinstance(msg, str), f"exit code {msg!r} instead of a message"
    assert msg.startswith("rlsurvey: ") and "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert _snapshot(out) == before, "the output directory changed"
    return msg


@pytest.fixture
def used_out(tmp_path):
    """An output directory that already holds a file: a refused run must not touch it."""
    out = tmp_path / "used"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    return out


# ----------------------------------------------------------------------------------------------------------
# Every number of every trainer's config
# ----------------------------------------------------------------------------------------------------------

POS, NON_NEG, COUNT, NON_NEG_INT = ["0", "-1"], ["-1"], ["0", "-2"], ["-1"]
BAD = {  # field -> out-of-range values (NaN and the infinities are added for every float field)
    "learning_rate": ["0", "-1e-4"], "weight_decay": NON_NEG, "batch_size": COUNT,
    "max_length": ["1", "0"], "center_rewards_coefficient": NON_NEG, "max_grad_norm": POS,
    "save_steps": COUNT, "save_total_limit": COUNT, "steps": COUNT,
    "num_mini_batches": COUNT, "epochs_per_rollout": COUNT, "max_new_tokens": COUNT,
    "temperature": ["0", "-0.5"], "top_k": NON_NEG_INT, "top_p": ["0", "1.5"], "kl_coef": NON_NEG,
    "kl_target": POS, "kl_horizon": COUNT, "gamma": ["-0.1", "1.5"], "lam": ["-0.1", "1.5"],
    "clip_eps_value": POS, "vf_coef": NON_NEG, "ent_coef": NON_NEG,
    "missing_eos_penalty": NON_NEG, "prompts_per_step": COUNT, "group_size": ["1", "0"], "clip_eps": POS,
    "clip_eps_high": POS, "mini_batch_size": COUNT, "eval_steps": COUNT, "beta": POS,
    "label_smoothing": ["0.5", "-0.1"], "gradient_accumulation_steps": COUNT, "max_steps": COUNT,
    "num_epochs": POS, "warmup_steps": NON_NEG_INT, "adam_betas": ["1", "-0.1"], "adam_epsilon": POS,
    "max_prompt_length": COUNT, "max_completion_length": COUNT, "ref_batch_size": COUNT,
    "logging_steps": COUNT, "dpop_lambda": NON_NEG, "bdpo_alpha": NON_NEG, "bdpo_momentum": ["1", "-0.1"],
    "simpo_gamma": NON_NEG, "kto_desirable_weight": NON_NEG, "kto_undesirable_weight": NON_NEG,
    "sapo_temperature_pos": POS, "sapo_temperature_neg": POS,
    "max_sampling_rounds": COUNT, "overlong_buffer": COUNT, "overlong_penalty_factor": NON_NEG,
    "sampler_correction_cap": ["0.5", "-1"],
}  # fmt: skip


def _numeric_fields(name: str) -> dict[str, bool]:
    """{field: is float} of the numeric options of `rlsurvey train <name>`."""
    cmd = cli._commands()[name]
    hints = typing.get_type_hints(cmd.config)
    out = {}
    for f in dataclasses.fields(cmd.config):
        tp, _ = _unwrap_optional(hints[f.name])
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else tp
        if f.name not in cli.BOUND and item in (int, float):
            out[f.name] = item is float
    return out


CASES = [(name, field) for name in cli.COMMANDS for field in _numeric_fields(name)]


def test_every_numeric_option_has_bad_values_here():
    missing = sorted({field for _, field in CASES} - set(BAD))
    assert not missing, f"add out-of-range values for {missing}"


@pytest.mark.parametrize(("name", "field"), CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_every_bad_number_is_refused_naming_its_option(tmp_path, no_loading, name, field):
    option = option_name(field)
    values = BAD[field] + (["nan", "inf", "-inf"] if _numeric_fields(name)[field] else [])
    out = tmp_path / "out"
    for value in values:
        if field == "adam_betas":  # two values; argparse reads "-inf" there as an option
            if value == "-inf":
                continue
            argv = ["train", name, option, "0.9", value]
        else:
            argv = ["train", name, f"{option}={value}"]
        _refused(argv, out, f"rlsurvey: {option}: ")
    assert not out.exists()


def test_huge_learning_rate_names_the_option_and_beta(tmp_path, no_loading, used_out):
    for argv, needle in [
        (["--learning-rate", "inf"], "--learning-rate: learning_rate must be"),
        (["--learning-rate", "nan"], "--learning-rate:"),
        (["--beta", "inf"], "--beta: beta must be"),
        (["--beta", "nan"], "--beta:"),
    ]:
        _refused(["train", "dpo", "--max-steps", "4", *argv], used_out, needle, "got")


def test_a_bad_number_from_python_names_its_field():
    with pytest.raises(FieldError, match="beta must be a finite number > 0, got inf") as err:
        DPOConfig(beta=float("inf"))
    assert err.value.field == "beta"
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        RewardTrainingConfig(batch_size=0)
    with pytest.raises(ValueError, match="kl_coef"):
        RLHFPPOConfig(kl_coef=float("nan"))
    with pytest.raises(ValueError, match="adam_betas"):
        DPOConfig(adam_betas=(0.9, float("nan")))
    with pytest.raises(ValueError, match="top_p"):
        rloo_config(top_p=0.0)


@pytest.mark.parametrize("name", ["grpo", "rloo"])
def test_greedy_sampling_is_refused_for_group_trainers(tmp_path, no_loading, name):
    _refused(["train", name, "--temperature", "0"], tmp_path / "o", "--temperature", "greedy", "advantage")
    with pytest.raises(ValueError, match="greedy"):
        GRPOConfig(temperature=0.0).validate()


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_zero_examples_is_refused_not_taken_for_all(tmp_path, no_loading, name):
    _refused(["train", name, "--num-examples", "0"], tmp_path / "o", "--num-examples 0", "positive")


def test_zero_examples_of_a_dataset_file_is_refused(tmp_path, no_loading):
    pairs = _write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": " b", "rejected": " c"}])
    _refused(["train", "dpo", "--dataset", pairs, "--num-examples", "0"], tmp_path / "o", "--num-examples 0")


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["train", "ppo", "--seed", "-1"], ["--seed -1"]),
        (["train", "grpo", "--num-examples", "1000000000"], ["--num-examples 1000000000", "at most"]),
        (["train", "grpo", "--seed", str(2**40)], ["--seed"]),
        (["train", "dpo", "--device", "gpu7"], ["--device gpu7", "expected cpu, cuda"]),
        (["train", "dpo", "--model", ""], ["--model: expected a value"]),
        (["train", "grpo", "--max-new-tokens", "500"], ["--max-new-tokens 500", "context"]),
        (["train", "reward", "--margin-column", "nope"], ["--margin-column nope", "no such column"]),
        (["train", "dpo", "--world", "arithmetic"], ["--world arithmetic", "no preference pairs"]),
        (["train", "grpo", "--reward", "gold"], ["--reward gold", "reviews world's reward"]),
        (["train", "ppo", "--reward", "verifier"], ["--reward verifier", "arithmetic or reasoning world"]),
        (["train", "ppo", "--batch-size", "4", "--num-mini-batches", "3"], ["--num-mini-batches:", "divide"]),
    ],
)
def test_other_bad_options(tmp_path, no_loading, used_out, argv, needles):
    _refused(argv, used_out, *needles)


# ----------------------------------------------------------------------------------------------------------
# Paths that are not there: refused at once, never taken for hub ids
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "dpo", "--model", "./missing"], "rlsurvey: --model ./missing: no such directory"),
        (["train", "grpo", "--model", "../gone/model"], "rlsurvey: --model ../gone/model: no such directory"),
        (["train", "reward", "--model", "/no/such/backbone"], "rlsurvey: --model /no/such/backbone: no such"),
        (["train", "ppo", "--model", "runs/x/final"], "rlsurvey: --model runs/x/final: no such directory"),
        (["train", "ppo", "--reward", "./rm"], "rlsurvey: --reward ./rm: no such directory"),
        (["train", "dpo", "--dataset", "./pairs.jsonl"], "rlsurvey: --dataset ./pairs.jsonl: no such file"),
        (
            ["train", "grpo", "--dataset", "data/p.parquet"],
            "rlsurvey: --dataset data/p.parquet: no such file",
        ),
    ],
)
def test_missing_paths_fail_at_once(tmp_path, no_loading, monkeypatch, argv, message):
    from rlsurvey.assets import SHIPPED_MODELS
    from rlsurvey.lm import models

    resolve = models._resolve

    def no_hub(name, *args, **kwargs):
        if str(name) in SHIPPED_MODELS:
            return resolve(name)
        raise AssertionError("the hub was asked for a local path")

    monkeypatch.setattr(models, "_resolve", no_hub)
    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.chdir(tmp_path)
    _refused(argv, tmp_path / "o", message)


def test_a_file_or_an_empty_directory_is_not_a_model(tmp_path, no_loading):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    (tmp_path / "empty").mkdir()
    _refused(["train", "dpo", "--model", tmp_path / "weights.bin"], tmp_path / "o", "is a file")
    _refused(["train", "dpo", "--model", tmp_path / "empty"], tmp_path / "o", "no config.json")
    _refused(["train", "grpo", "--reward", tmp_path / "empty"], tmp_path / "o", "--reward", "no config.json")


def test_an_output_dir_that_is_a_file(tmp_path, no_loading):
    (tmp_path / "f").write_text("x")
    _refused(["train", "dpo"], tmp_path / "f", "--output-dir", "is a file")
    _refused(["train", "dpo"], tmp_path / "f" / "sub", "--output-dir", "is a file")


# ----------------------------------------------------------------------------------------------------------
# Dataset files
# ----------------------------------------------------------------------------------------------------------


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


PAIR = {"prompt": "how was it?", "chosen": " fine", "rejected": " awful"}
MSG = {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize(
    ("name", "content", "needles"),
    [
        ("empty.jsonl", b"", ["empty.jsonl: the file is empty"]),
        ("blank.jsonl", b"\n  \n", ["blank.jsonl: the file is empty"]),
        ("bad.jsonl", (json.dumps(PAIR) + "\n{not json\n").encode(), ["bad.jsonl: line 2: invalid JSON"]),
        (
            "latin.jsonl",
            json.dumps(PAIR).encode() + b"\n" + b'{"prompt": "caf\xe9"}\n',
            ["line 2: not UTF-8"],
        ),
        ("list.jsonl", b"[1, 2]\n", ["item 0 of the array: expected a JSON object"]),
        (
            "conv.jsonl",
            (json.dumps({**MSG, "rejected": [{"role": "assistant"}]}) + "\n").encode(),
            ["conv.jsonl: line 1: column 'rejected', message 0: no 'content'"],
        ),
        (
            "null.jsonl",
            (json.dumps(PAIR) + "\n" + json.dumps({**PAIR, "prompt": None}) + "\n").encode(),
            ["line 2: column 'prompt' is missing or null"],
        ),
        (
            "mixed.jsonl",
            (json.dumps(PAIR) + "\n" + json.dumps({**PAIR, "chosen": 3}) + "\n").encode(),
            ["line 2: column 'chosen' must hold strings, got int"],
        ),
        (
            "cols.jsonl",
            (json.dumps({"prompt": "p", "chosen": " c"}) + "\n").encode(),
            ["missing ['rejected']"],
        ),
        ("same.jsonl", (json.dumps({**PAIR, "rejected": " fine"}) + "\n").encode(), ["row 0", "the same"]),
        ("junk.parquet", b"not parquet at all", ["junk.parquet: not a readable Parquet file"]),
    ],
)
def test_broken_preference_files_name_file_line_and_column(tmp_path, no_loading, name, content, needles):
    path = tmp_path / name
    path.write_bytes(content)
    msg = _refused(["train", "dpo", "--dataset", path], tmp_path / "o", f"--dataset {path}", *needles)
    assert "Traceback" not in msg


def test_a_missing_split_or_a_directory_that_is_no_dataset(tmp_path, no_loading):
    saved = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([PAIR])}).save_to_disk(str(saved))
    _refused(
        ["train", "dpo", "--dataset", saved, "--split", "test"], tmp_path / "o", "--split test", "'train'"
    )
    (tmp_path / "plain").mkdir()
    _refused(
        ["train", "reward", "--dataset", tmp_path / "plain"],
        tmp_path / "o",
        f"--dataset {tmp_path / 'plain'}: ",
    )


def test_broken_prompt_files(tmp_path, no_loading):
    no_prompt = _write_jsonl(tmp_path / "t.jsonl", [{"text": "a"}])
    _refused(["train", "grpo", "--dataset", no_prompt], tmp_path / "o", "'prompt' column")
    conv = _write_jsonl(tmp_path / "c.jsonl", [{"prompt": [{"content": "1+1="}]}])
    _refused(["train", "grpo", "--dataset", conv], tmp_path / "o", "prompt", "no 'role'")
    empty = _write_jsonl(tmp_path / "e.jsonl", [{"prompt": ""}])
    _refused(
        ["train", "rloo", "--dataset", empty], tmp_path / "o", "line 1: column 'prompt' is an empty string"
    )


def test_broken_sft_files_name_the_column(tmp_path, no_loading):
    no_completion = _write_jsonl(tmp_path / "a.jsonl", [{"prompt": "1+2+3=", "answer": "6"}])
    _refused(["train", "sft", "--dataset", no_completion], tmp_path / "o", "missing ['completion']")
    nothing = _write_jsonl(tmp_path / "b.jsonl", [{"question": "1+2+3="}])
    needles = ("'messages'", "'text'", "found ['question']")
    _refused(["train", "sft", "--dataset", nothing], tmp_path / "o", *needles)
    no_answer = _write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    _refused(["train", "sft", "--dataset", no_answer], tmp_path / "o", "row 0 has no assistant turn")


def test_an_sft_prompt_longer_than_the_context_names_the_lengths(tmp_path):
    long = _write_jsonl(tmp_path / "long.jsonl", [{"prompt": "1+" * 40 + "1=", "completion": "41"}])
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "sft", "--dataset", str(long), "--output-dir", str(tmp_path / "o")])
    assert "row 0: the prompt has 82 tokens" in str(exc.value) and "context (64)" in str(exc.value)


def test_row_errors_from_python_name_the_row():
    ds = datasets.Dataset.from_list([PAIR, {**PAIR, "chosen": ""}])
    from rlsurvey.data import load_preferences

    with pytest.raises(ValueError, match="row 1: column 'chosen' is an empty string"):
        load_preferences(ds)
    conv = datasets.Dataset.from_list([{**MSG, "rejected": [{"role": "assistant", "content": None}]}])
    with pytest.raises(ValueError, match="row 0: column 'rejected', message 0: no 'content'"):
        load_preferences(conv)


def test_a_pretty_printed_json_array_is_still_read(tmp_path):
    from rlsurvey.data import load_preferences

    path = tmp_path / "arr.json"
    path.write_text(json.dumps([PAIR, PAIR], indent=2))
    assert len(load_preferences(path)) == 2


# ----------------------------------------------------------------------------------------------------------
# Prompts longer than the model's context
# ----------------------------------------------------------------------------------------------------------


def _long_pair(n: int = LONG) -> dict:
    return {"prompt": "the room was clean and " * (n // 23), "chosen": " great stay", "rejected": " bad stay"}


def test_dpo_cuts_long_prompts_on_the_left_to_the_context():
    model, tok = tiny_causal_lm("llama")
    limit = model.config.max_position_embeddings
    ds = datasets.Dataset.from_list([_long_pair(), PAIR])
    data = _Tokenized(ds, tok, DPOConfig(), limit)
    assert all(len(p) + len(data.responses[c][i]) <= limit for c in ("chosen", "rejected") for i, p in
               enumerate(data.prompt))  # fmt: skip
    assert not torch.equal(data.responses["chosen"][0], data.responses["rejected"][0])
    end = tok(_long_pair()["prompt"], add_special_tokens=False)["input_ids"][-5:]
    assert data.prompt[0][-5:].tolist() == end  # the prompt keeps its end, next to the response
    assert len(data.prompt[1]) == len(tok(PAIR["prompt"])["input_ids"])  # a short one is untouched


def test_dpo_trainer_with_a_long_prompt_scores_within_the_context():
    model, tok = tiny_causal_lm("llama")
    ds = datasets.Dataset.from_list([_long_pair(1000), PAIR])
    trainer = DPOTrainer(model, tok, ds, DPOConfig(max_steps=1, batch_size=2, progress=False))
    longest = max(
        len(p) + len(r) for p, r in zip(trainer.train_data.prompt, trainer.train_data.responses["chosen"])
    )
    assert longest <= model.config.max_position_embeddings
    assert len(trainer.train()) == 1


def test_dpo_refuses_a_pair_the_context_cannot_tell_apart():
    model, tok = tiny_causal_lm("llama")
    shared = " same words" * 40
    ds = datasets.Dataset.from_list([{"prompt": "p", "chosen": shared + " yes", "rejected": shared + " no"}])
    with pytest.raises(ValueError, match="row 0: chosen and rejected are the same"):
        _Tokenized(ds, tok, DPOConfig(), model.config.max_position_embeddings)


def test_reward_model_keeps_chosen_and_rejected_distinct_on_a_long_prompt(tiny_lm_dir):
    rm = RewardModel.from_pretrained(tiny_lm_dir("llama"))
    context = rm.model.config.max_position_embeddings
    pair = _long_pair()
    for max_length in (16, None):
        enc = rm.tokenize([pair["prompt"]] * 2, [pair["chosen"], pair["rejected"]], max_length=max_length)
        ids = enc["input_ids"]
        assert ids.shape[1] <= (max_length or context)
        assert not torch.equal(ids[0], ids[1])  # the responses survive the cut, the prompt's start does not
        assert rm.tokenizer.decode(ids[0]).replace(" ", "").endswith("greatstay<eos>")
        assert torch.isfinite(rm(**enc)).all()
    short = rm.tokenize(["ab"], ["cd"], max_length=16)
    assert short["input_ids"].shape == (1, 5) and short["attention_mask"].sum() == 5  # a b c d <eos>


def _limited(max_bytes: int):
    def limit():
        resource.setrlimit(resource.RLIMIT_DATA, (max_bytes, max_bytes))

    return limit


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("dpo", ["--max-steps", "1", "--batch-size", "2"]),
        ("reward", ["--num-epochs", "1", "--batch-size", "2", "--max-length", "none"]),
        (
            "grpo",
            [
                "--world",
                "reviews",
                "--reward",
                "gold",
                "--steps",
                "1",
                "--prompts-per-step",
                "2",
                "--group-size",
                "2",
                "--max-new-tokens",
                "4",
            ],
        ),
    ],  # fmt: skip
)
def test_a_100k_character_prompt_trains_in_bounded_memory(tmp_path, tiny_lm_dir, name, extra):
    """End to end in a child process whose memory is capped at 4 GB (a 100,000-token forward pass needs
    tens of GB): the run finishes, the over-long prompt cut to the tiny model's 128 positions, also for a
    reward model asked not to truncate (--max-length none)."""
    pair = _long_pair()
    rows = [pair, PAIR] if name != "grpo" else [{"prompt": pair["prompt"]}, {"prompt": PAIR["prompt"]}]
    data = _write_jsonl(tmp_path / "long.jsonl", rows)
    model = str(tiny_lm_dir("llama"))
    argv = [sys.executable, "-m", "rlsurvey", "train", name, "--model", model, "--dataset", str(data),
            "--output-dir", str(tmp_path / "out"), "--no-progress", *extra]  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, preexec_fn=_limited(4 << 30))
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "out" / "config.json").is_file()
    if name == "grpo":
        assert "keep only their end, e.g. row 0" in run.stderr


# ----------------------------------------------------------------------------------------------------------
# Disk space, the data command, --debug and the process as a whole
# ----------------------------------------------------------------------------------------------------------


def test_too_little_disk_space_is_refused_before_training(tmp_path, no_loading, monkeypatch, used_out):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    msg = _refused(["train", "dpo"], used_out, f"--output-dir {used_out}", "1,000 bytes free", "needed")
    assert "weights" in msg
    _refused(["train", "reward"], tmp_path / "new" / "rm", "1,000 bytes free")


def test_enough_disk_space_passes_the_check(tmp_path, monkeypatch):
    from rlsurvey.cli_checks import _check_output

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage(10**12, 0, 10**12))
    model = Path(cli.__file__).parent / "assets" / "arith-base"
    _check_output(argparse.Namespace(output_dir=str(tmp_path / "o")), model)  # no error


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["-n", "0"], "-n/--num-examples 0"),
        (["-n", str(10**12)], "-n/--num-examples"),
        (["--seed", "-3"], "--seed -3"),
    ],
)
def test_data_command_bad_numbers(tmp_path, argv, needle):
    out = tmp_path / "d.jsonl"
    with pytest.raises(SystemExit) as exc:
        cli.main(["data", str(out), *argv])
    assert needle in exc.value.code and not out.exists()


def test_data_command_bad_suffix(tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["data", str(tmp_path / "d.csv")])
    assert ".jsonl, .json or .parquet" in exc.value.code and not (tmp_path / "d.csv").exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "dpo", "--learning-rate", "fast"], "argument --learning-rate: expected float, got 'fast'"),
        (["train", "grpo", "--steps", "1.5"], "argument --steps: expected int, got '1.5'"),
        (["train", "ppo", "--kl-estimator", "k9"], "argument --kl-estimator: invalid choice"),
        (["train", "kto"], "invalid choice: 'kto'"),
    ],
)
def test_parse_errors_are_one_line(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_debug_flag_and_variable_show_the_traceback(tmp_path, no_loading, monkeypatch):
    for argv in (["--debug", "train", "dpo"], ["train", "dpo", "--debug"]):
        with pytest.raises(InputError, match="--learning-rate"):
            cli.main([*argv, "--learning-rate", "nan", "--output-dir", str(tmp_path / "o")])
    monkeypatch.setenv("RLSURVEY_DEBUG", "1")
    with pytest.raises(InputError, match="--beta"):
        cli.main(["train", "dpo", "--beta", "inf", "--output-dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_an_error_after_the_checks_is_one_line_too(tmp_path, monkeypatch, parser):
    monkeypatch.setattr(cli, "build_parser", lambda: parser)

    def broken(*args, **kwargs):
        raise KeyError("content")

    monkeypatch.setattr("rlsurvey.lm.models.load_model", broken)
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "grpo", "--output-dir", str(tmp_path / "o")])
    assert exc.value.code == "rlsurvey: KeyError: 'content' (--debug shows the traceback)"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "dpo", "--learning-rate", "1e999", "--max-steps", "4"], "rlsurvey: --learning-rate: "),
        (["train", "reward", "--batch-size", "0"], "rlsurvey: --batch-size: "),
    ],
)
def test_the_command_exits_non_zero_with_one_line(tmp_path, argv, needle):
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "rlsurvey", *argv, "--output-dir", str(out)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode != 0
    assert run.stderr.strip().startswith(needle) and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "Traceback" not in run.stderr and not out.exists()
    debug = subprocess.run([sys.executable, "-m", "rlsurvey", *argv, "--debug", "--output-dir", str(out)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert debug.returncode != 0 and "Traceback" in debug.stderr and not out.exists()
