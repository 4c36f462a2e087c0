"""Language modelling: what every norm means on tokens, which norms let a token see the future,
the by-play split, the vocabulary, the windows, and task=lm end to end for every norm."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from normlab.data.text import load_shakespeare, load_text_file, markdown_to_text, play_files
from normlab.data.text_module import build_text_datamodule
from normlab.data.vocab import UNK, CharVocab
from normlab.data.windows import FixedWindows, RandomWindows
from normlab.errors import ConfigError
from normlab.models import build_model
from normlab.models.gpt import token_mixing
from normlab.norms import NORMS, build_norm, supports
from normlab.norms.contract import mixes_tokens
from normlab.run import train

# Norms whose statistics span the token axis, as their classes declare (contract.mixes_tokens): in
# training a token sees later tokens through them (all batch-dependent ones but bln, and
# instance, frn, cond_instance). The causality test below checks each declaration.
MIXES_IN_TRAIN = {name for name in NORMS if mixes_tokens(NORMS[name])}
FAST = [
    "task=lm",
    "debug=fast_dev_run",
    "data.batch=4",
    "data.eval_batch=4",
    "task.sample.num=2",
    "task.sample.chars=16",
    "threads=1",
]  # one thread: a tiny model gains nothing from two on a busy machine


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory):
    """One datasets cache for the module, so the plays are parsed once (``load_shakespeare`` memoizes)."""
    return str(tmp_path_factory.mktemp("hf"))


@pytest.fixture(autouse=True)
def keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)  # threads=1 must not slow down the test files that run after this one


# --- what each norm normalizes over, on (N, L, C) tokens ------------------------------------


def _stats(y, dims):
    return y.mean(dims), y.var(dims, unbiased=False)


@pytest.mark.parametrize("name", sorted(NORMS))
def test_every_norm_reduces_over_its_documented_token_axes(name):
    if not supports(name, "nlc"):
        pytest.skip(f"{name} has no meaning for tokens")
    N, L, C, G = 4, 10, 16, 4
    x = torch.randn(N, L, C) * 3 + torch.linspace(-5, 5, C)  # an offset per channel, as real activations have
    m = build_norm(name, C, "nlc", **({"num_groups": G} if name in ("group", "evonorm_s0") else {})).train()
    with torch.no_grad():  # normalization-activation layers: switch the activation off, the normalization is left
        if name == "frn":
            m.tau.fill_(-1e9)  # TLU max(y, tau) passes everything
        elif name in ("evonorm_s0", "evonorm_b0"):
            m.v1.zero_()
    y = m(x)
    if name in ("layer", "rms", "group", "layer2d", "group1"):
        per_token = {"group": y.view(N, L, G, C // G)}.get(name, y)
        if name == "rms":
            torch.testing.assert_close((per_token**2).mean(-1), torch.ones(N, L), atol=1e-4, rtol=0)
        else:
            mu, var = _stats(per_token, -1)
            torch.testing.assert_close(mu, torch.zeros_like(mu), atol=1e-4, rtol=0)
            torch.testing.assert_close(var, torch.ones_like(var), atol=1e-3, rtol=0)
    elif name in ("batch", "instance", "batch_renorm", "ghost_batch", "batch_instance", "cond_instance", "sync_batch"):
        # At initialisation batch_renorm (warm-up), ghost_batch (N < virtual_batch) and batch_instance
        # (rho = 1) are BatchNorm, and cond_instance is InstanceNorm.
        batch_like = name not in ("instance", "cond_instance")
        dims = (0, 1) if batch_like else 1  # batch: (N, L) per channel; instance: L per sequence
        mu, var = _stats(y, dims)
        torch.testing.assert_close(mu, torch.zeros_like(mu), atol=1e-4, rtol=0)
        torch.testing.assert_close(var, torch.ones_like(var), atol=1e-3, rtol=0)
        if batch_like:  # and not per sequence: one sequence's own mean is not zero
            assert _stats(y, 1)[0].abs().max() > 0.1
    elif name == "frn":  # mean of squares over L per sequence and channel
        torch.testing.assert_close((y**2).mean(1), torch.ones(N, C), atol=1e-4, rtol=0)
    elif name == "evonorm_s0":  # with v1 = 0 the numerator is x / 2, the std that of C/G channels per token
        per_group = y.view(N, L, G, C // G)
        torch.testing.assert_close(per_group.var(-1, unbiased=False), torch.full((N, L, G), 0.25), atol=1e-3, rtol=0)
    elif name == "evonorm_b0":  # with v1 = 0: x / max(std over (N, L), std over L of the sequence)
        den = torch.maximum(
            torch.sqrt(x.var((0, 1), unbiased=False) + 1e-5), torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5)
        )
        torch.testing.assert_close(y, x / den, atol=1e-4, rtol=1e-4)
    elif name == "switchable":  # at initialisation an equal mix of the three means and of the three variances
        parts = [(x.mean(d, keepdim=True), x.var(d, unbiased=False, keepdim=True)) for d in (1, -1, (0, 1))]
        mu, var = sum(p[0] for p in parts) / 3, sum(p[1] for p in parts) / 3  # instance, layer, batch
        torch.testing.assert_close(y, (x - mu) / torch.sqrt(var + 1e-5), atol=1e-4, rtol=1e-4)
    elif name == "bln":  # the authors': batch part over N per (token, channel), feature part over C per token
        ln = torch.nn.functional.layer_norm(x, (C,), eps=1e-3)
        bn = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-3)
        torch.testing.assert_close(y, (ln * (1 / N - 1e-4) + (1 - 1 / N - 1e-4) * bn) / C**0.5, atol=1e-4, rtol=1e-4)
    elif name == "bln_pooled":  # (1/N) x per-token layer statistics + (1 - 1/N) x (N, L) batch statistics
        ln = torch.nn.functional.layer_norm(x, (C,))
        bn = (x - x.mean((0, 1))) / torch.sqrt(x.var((0, 1), unbiased=False) + 1e-5)
        torch.testing.assert_close(y, ln / N + (1 - 1 / N) * bn, atol=1e-4, rtol=1e-4)
    else:
        assert name == "none"
        assert torch.equal(y, x)


# --- causality: does the output at t change when token t+1 changes? -------------------------


def _gpt(name, **norm_knobs):
    torch.manual_seed(0)
    model_cfg = {"name": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}
    return build_model(model_cfg, {"name": name, **norm_knobs}, vocab_size=11)


def _sees_the_future(model, t=7):
    """Change token t+1 of the first sequence: do the logits at positions <= t change?"""
    idx = torch.randint(11, (4, 16), generator=torch.Generator().manual_seed(1))
    changed = idx.clone()
    changed[0, t + 1] = (idx[0, t + 1] + 1) % 11
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert not torch.allclose(a[0, t + 1], b[0, t + 1]), "the change must matter where it is made"
    return not torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", sorted(NORMS))
def test_only_norms_with_statistics_over_tokens_leak_the_future_in_training(name):
    if not supports(name, "nlc"):
        pytest.skip(f"{name} has no meaning for tokens")
    model = _gpt(name).train()
    assert _sees_the_future(model) == (name in MIXES_IN_TRAIN)
    assert token_mixing(model.blocks[0].norm_1)[0] == (name in MIXES_IN_TRAIN)


@pytest.mark.parametrize(
    "name,knobs,leaks",
    [
        ("batch", {}, False),  # running statistics
        ("bln_pooled", {}, False),  # running batch part + per-token layer part
        ("instance", {}, True),  # no running statistics: own tokens, even in eval
        ("instance", {"track_running_stats": True}, False),  # the causal-safe option
        ("batch", {"track_running_stats": False}, True),  # batch statistics in eval too
    ],
)
def test_eval_mode_is_causal_exactly_when_the_norm_has_running_statistics(name, knobs, leaks):
    model = _gpt(name, **knobs)
    model.train()(torch.randint(11, (4, 16)))  # one training forward fills the running statistics
    assert _sees_the_future(model.eval()) == leaks
    assert token_mixing(model.blocks[0].norm_1)[1] == leaks


@pytest.mark.parametrize("name", sorted(NORMS))
def test_a_norm_called_causal_in_eval_mode_is_causal_in_eval_mode(name):
    if not supports(name, "nlc"):
        pytest.skip(f"{name} has no meaning for tokens")
    model = _gpt(name)
    model.train()(torch.randint(11, (4, 16)))  # one training forward fills any running statistics
    if not token_mixing(model.blocks[0].norm_1)[1]:
        assert not _sees_the_future(model.eval())


@pytest.mark.parametrize("position", ["pre", "post"])
def test_causal_attention_in_both_norm_positions(position):
    torch.manual_seed(0)
    model = build_model(
        {"name": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "norm_position": position},
        {"name": "layer"},
        vocab_size=11,
    )
    assert not _sees_the_future(model.train())
    assert isinstance(model.norm_f, torch.nn.Identity) == (position == "post")  # post-LN has no final norm


@pytest.mark.parametrize("position", ["pre", "post"])
@pytest.mark.parametrize("name", sorted(NORMS))
def test_every_norm_comes_from_the_factory_and_trains_in_both_positions(name, position):
    if not supports(name, "nlc"):
        pytest.skip(f"{name} has no meaning for tokens")
    torch.manual_seed(0)
    model = build_model(
        {"name": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "norm_position": position},
        {"name": name},
        vocab_size=11,
    ).train()
    norms = [m for m in model.modules() if type(m) is NORMS[name]]
    assert len(norms) == 2 * 2 + (position == "pre")  # two per block, plus the final one in pre-LN
    idx = torch.randint(11, (4, 17))
    loss = torch.nn.functional.cross_entropy(model(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item() - math.log(11)) < 1.0  # near chance at initialisation
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for m in norms for p in m.parameters())


def test_build_warns_once_naming_a_norm_that_sees_later_tokens(caplog):
    with caplog.at_level(logging.WARNING, logger="normlab.models.gpt"):
        _gpt("batch")
        _gpt("instance")
        _gpt("layer")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "'batch'" in warnings[0] and "eval mode on running statistics" in warnings[0]
    assert "'instance'" in warnings[1] and "norm.track_running_stats=true" in warnings[1]


# --- data: split by play, vocabulary, windows -----------------------------------------------


@pytest.fixture(scope="module")
def plays(hf_cache):
    return load_shakespeare(cache_dir=hf_cache)


def test_plays_are_split_whole_into_train_val_test(plays):
    names = [f.stem for f in play_files()]
    split = plays.documents
    assert len(names) == 38 and [len(split[s]) for s in ("train", "val", "test")] == [30, 4, 4]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(names)  # each play exactly once
    # The text follows the names: each play's longest line is found in its own split only.
    for f in play_files():
        line = max(markdown_to_text(f.read_text()).splitlines(), key=len)
        home = next(s for s in split if f.stem in split[s])
        assert [s for s in ("train", "val", "test") if line in getattr(plays, s)] == [home], f.stem


def test_play_split_is_fixed_by_its_seed_and_not_by_the_run(plays, tmp_path):
    again = load_shakespeare(split_seed=0, cache_dir=str(tmp_path))
    other = load_shakespeare(split_seed=1, cache_dir=str(tmp_path))
    assert again.documents == plays.documents and again.val == plays.val
    assert other.documents["val"] != plays.documents["val"]


def test_plays_are_plain_text_without_markdown(plays):
    assert not set("*_#\\") & set(plays.train)
    assert "  \n" not in plays.train and "\nHAMLET\n" in plays.test + plays.val + plays.train


def test_vocabulary_comes_from_train_and_maps_unseen_characters_to_unknown(tmp_path):
    for split, text in {"train": "to be or not to be\n" * 20, "val": "zebra be\n" * 20, "test": "be!\n" * 40}.items():
        (tmp_path / f"{split}.txt").write_text(text)
    files = {s: str(tmp_path / f"{s}.txt") for s in ("train", "val", "test")}
    data = build_text_datamodule(
        {"name": "text_file", "batch": 2, "data_files": files, "cache_dir": str(tmp_path / "hf")}, block_size=8, seed=0
    )
    data.setup()
    assert data.vocab.itos == [UNK, *sorted(set("to be or not\n"))]
    assert data.vocab.decode(data.vocab.encode("zebra")) == f"{UNK}ebr{UNK}"  # z and a never occur in train
    unseen = set("zebra be\n") - set("to be or not\n")
    assert int((data.ids["val"] == 0).sum()) == sum(c in unseen for c in "zebra be\n") * 20
    assert int((data.ids["test"] == 0).sum()) == 40  # every "!"


def test_vocab_round_trips_known_text_and_ignores_a_literal_unknown_symbol():
    v = CharVocab.from_text(f"héllo wörld—{UNK}")
    assert v.decode(v.encode("wörld—héllo")) == "wörld—héllo"
    assert len(v) == len(set("héllo wörld—")) + 1 and v.encode(UNK).tolist() == [0]


def test_one_file_is_cut_into_contiguous_splits(tmp_path):
    (tmp_path / "a.txt").write_text("".join(chr(97 + i % 26) for i in range(1000)))
    s = load_text_file(str(tmp_path / "a.txt"), cache_dir=str(tmp_path / "hf"))
    assert (len(s.train), len(s.val), len(s.test)) == (800, 100, 100)
    assert s.train + s.val + s.test == (tmp_path / "a.txt").read_text()


def test_windows_are_next_character_pairs_and_eval_windows_are_fixed():
    ids = torch.arange(200) % 97
    x, y = next(iter(RandomWindows(ids, 16, 8, batches=3, seed=0)))
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y[:, -1], (x[:, -1] + 1) % 97)
    train = RandomWindows(ids, 16, 8, batches=3, seed=0)
    first, second = [b[0] for b in train], [b[0] for b in train]
    assert len(first) == 3 and not torch.equal(first[0], second[0])  # a new draw every epoch
    evals = FixedWindows(ids, 16, 5, windows=12)
    a, b = [x for x, _ in evals], [x for x, _ in evals]
    assert all(torch.equal(p, q) for p, q in zip(a, b)) and sum(len(p) for p in a) == 12
    assert a[0][0, 0] == 0 and a[-1][-1, -1] == ids[-2]  # first and last window of the split


def test_unknown_or_unreachable_text_dataset_is_one_line_with_the_fix(monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown text dataset 'shakspeare'.*Did you mean 'shakespeare'"):
        build_text_datamodule({"name": "shakspeare", "batch": 2}, 16, 0)
    with pytest.raises(ConfigError, match="text_file needs files"):
        build_text_datamodule({"name": "text_file", "batch": 2, "data_files": "???"}, 16, 0).setup()
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # as without internet, minus the retries
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="cannot load 'Salesforce/wikitext'.*Fix: use data=shakespeare"):
        build_text_datamodule({"name": "wikitext2", "batch": 2}, 16, 0).setup()


# --- task=lm end to end ---------------------------------------------------------------------


def test_task_lm_picks_the_gpt_and_shakespeare_and_the_sweep_names_every_norm(compose):
    cfg = compose(["task=lm", "norm=rms"])
    assert (cfg.task.name, cfg.model.name, cfg.data.name, cfg.norm.name) == ("lm", "gpt", "shakespeare", "rms")
    assert cfg.task.optim.name == "adamw" and cfg.task.monitor == "val/loss"
    assert compose(["task=lm"]).norm.name == "layer"  # the Transformer's own norm unless told otherwise
    sweep = compose(["experiment=lm_norms"])
    assert sweep.name == "lm_norms" and sweep.task.name == "lm"


@pytest.mark.parametrize("name", sorted(NORMS))
def test_every_norm_trains_a_gpt_on_shakespeare(compose, hf_cache, name):
    if not supports(name, "nlc"):
        pytest.skip(f"{name} has no meaning for tokens")
    cfg = compose([*FAST, f"norm={name}", "logger=csv", f"data.cache_dir={hf_cache}"])
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["norm"] == name and summary["data"] == "shakespeare"
    m = summary["metrics"]
    assert 0 < m["val/loss"] < 2 * math.log(100)  # about ln(vocabulary) before training
    assert m["test/bpc"] == pytest.approx(m["test/loss"] / math.log(2), rel=1e-6)
    assert m["val/bpc"] == pytest.approx(m["val/loss"] / math.log(2), rel=1e-6)


@pytest.mark.parametrize("name", ["layer", "batch"])
def test_post_ln_trains_and_the_run_writes_samples_to_disk_and_wandb(compose, hf_cache, name):
    cfg = compose([*FAST, f"norm={name}", "model.norm_position=post", "logger=wandb", f"data.cache_dir={hf_cache}"])
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["config"]["model"]["norm_position"] == "post"
    text = (Path(cfg.paths.output_dir) / "samples.txt").read_text()
    assert text.count("--- sample") == 2 and len(text) > 2 * 16
    wandb_files = Path(summary["wandb_dir"]) / "files"
    assert any(wandb_files.rglob("samples*.table.json"))
    on_disk = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    assert on_disk["metrics"]["test/bpc"] == pytest.approx(on_disk["metrics"]["test/loss"] / math.log(2))


def test_wandb_gets_a_table_of_samples_over_the_epochs(compose, hf_cache):
    cfg = compose([*FAST, "trainer.max_epochs=3", "logger=wandb", f"data.cache_dir={hf_cache}"])
    summary = train(cfg)
    assert summary["status"] == "completed"
    tables = [json.loads(p.read_text()) for p in (Path(summary["wandb_dir"]) / "files").rglob("samples*.table.json")]
    last = max(tables, key=lambda t: len(t["data"]))  # each epoch logs every row so far
    assert last["columns"] == ["epoch", "step", "sample", "text"]
    assert [(row[0], row[2]) for row in last["data"]] == [(e, i) for e in range(3) for i in range(2)]
    assert all(len(row[3]) > 16 for row in last["data"])
