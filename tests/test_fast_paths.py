"""The fast inference paths equal the straightforward ones.

* cached decoding (`fast_decoder_layer_step`, preallocated key/value cache, per-call constants) equals the
  module-by-module step and a decoder run *without* cache over the whole prefix at every step;
* AiT-P's one-pass depth decoding equals stepwise decoding;
* batched decoding equals one image at a time;
* inverse-CDF nucleus sampling draws from the original's nucleus with the renormalised probabilities;
* the backbone's inference scratch buffer (reused position-bias gather) changes no number.

On random tiny models and on the converted original fixtures (tests/fixtures/original).
"""

import shutil

import numpy as np
import pytest
import torch
from test_modeling import tiny_model as _tiny_model

from ait_hf import modeling_ait
from ait_hf.configuration_ait import TASK_IDS
from ait_hf.modeling_ait import AiTDecodingState, AiTForDepthAndInstanceSegmentation, sample_tokens
from ait_hf.modeling_ait_backbone import AiTSwinV2Backbone, _ScratchBuffer
from conversion.convert_ait_to_hf import convert


def tiny_model(**kwargs) -> AiTForDepthAndInstanceSegmentation:
    """`test_modeling.tiny_model` with every decoder bias and layer-norm parameter perturbed: the default init
    (zero biases, unit norms) would let a fast path that drops or swaps them pass."""
    model = _tiny_model(**kwargs)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.decoder.named_parameters():
            if name.endswith("bias") or "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


# ---------------------------------------------------------------------------------------- references
def decode_without_cache(model, memory, task, n):
    """Greedy decoding the straightforward way: a full causal decoder pass over the prefix at every step.

    Returns per-step hidden states (B, n, d), the logits of each step's slot range, tokens and class scores.
    """
    cfg, vocab, decoder = model.config, model.config.vocabulary, model.decoder
    task_id = TASK_IDS[task]
    positions = decoder.position_embeddings[task_id]
    b = memory.shape[0]
    inputs = [decoder.task_embeddings[task_id].expand(b, -1, -1)[:, 0]]
    length = cfg.object_length(task) if task != "depth" else 1
    hiddens, logits_all, tokens, scores = [], [], [], []
    for i in range(n):
        embeds = torch.stack(inputs, 1) + positions[: i + 1]
        hidden = decoder(embeds, memory)[:, -1]
        slot = i % length
        if task == "depth":
            start, end = vocab.depth_range()
        elif slot < 4:
            start, end = vocab.box_range()
        elif slot == 4:
            start, end = vocab.class_range()
        else:
            start, end = vocab.mask_range()
        logits = decoder.logits(hidden, start, end)
        token = logits.argmax(-1)
        if task != "depth" and slot == 4:
            noise = decoder.logits(hidden, vocab.noise_label, vocab.noise_label + 1)
            probs = torch.cat([logits, noise], -1).softmax(-1)
            scores.append(probs.gather(1, token[:, None])[:, 0])
        soft = cfg.soft_token_inputs and (task == "depth" or slot >= 5)
        codes = decoder.token_embeddings[start:end]
        inputs.append(logits.softmax(-1) @ codes if soft else codes[token])
        hiddens.append(hidden)
        logits_all.append(logits)
        tokens.append(token)
    return torch.stack(hiddens, 1), logits_all, torch.stack(tokens, 1), scores


def assert_close(actual, expected, tol=1e-5):
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol)


# ---------------------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("batch", [1, 3])
def test_fast_step_equals_module_step(batch):
    """`fast_decoder_layer_step` vs `AiTDecoderLayer.step` (separate projections, SDPA) on random inputs."""
    model = tiny_model(tasks=["depth"])
    memory = torch.randn(batch, 16, 16)
    with torch.no_grad():
        fast = AiTDecodingState(model.decoder, memory, 12, fast=True)
        slow = AiTDecodingState(model.decoder, memory, 12, fast=False)
        for _ in range(12):
            x = torch.randn(batch, 16)
            assert_close(fast.step(x), slow.step(x[:, None]))
        with pytest.raises(ValueError, match="full"):
            fast.step(x)


def test_fast_step_refuses_training_mode():
    model = tiny_model(tasks=["depth"]).train()
    with pytest.raises(ValueError, match="eval mode"):
        AiTDecodingState(model.decoder, torch.randn(1, 16, 16), 4, fast=True)
    assert not AiTDecodingState(model.decoder, torch.randn(1, 16, 16), 4).fast


@pytest.mark.parametrize("soft", [True, False])
def test_depth_decoding_equals_decoding_without_cache(soft):
    model = tiny_model(tasks=["depth"], soft_token_inputs=soft)
    memory = torch.randn(2, 16, 16)
    start, end = model.config.vocabulary.depth_range()
    with torch.no_grad():
        hidden, logits, tokens = model._decode_depth_autoregressive(memory, 16, start, end, None)
        ref_hidden, ref_logits, ref_tokens, _ = decode_without_cache(model, memory, "depth", 16)
    assert_close(hidden, ref_hidden)
    assert_close(logits, torch.stack(ref_logits, 1))
    assert torch.equal(tokens, ref_tokens)


@pytest.mark.parametrize("soft", [True, False])
def test_object_decoding_equals_decoding_without_cache(soft):
    model = tiny_model(soft_token_inputs=soft)
    memory = torch.randn(2, 16, 16)
    total = model.config.num_queries * model.config.object_length("instance_segmentation")
    with torch.no_grad():
        out = model._decode_objects(memory, "instance_segmentation", True, None)
        ref_hidden, ref_logits, ref_tokens, ref_scores = decode_without_cache(
            model, memory, "instance_segmentation", total
        )
    assert_close(out.decoder_hidden_states, ref_hidden)
    assert torch.equal(out.sequences, ref_tokens)
    assert_close(out.pred_scores, torch.stack(ref_scores, 1))
    length = model.config.object_length("instance_segmentation")
    mask_logits = [logit for i, logit in enumerate(ref_logits) if i % length >= 5]
    assert_close(out.mask_logits.flatten(1, 2), torch.stack(mask_logits, 1))


def test_parallel_one_pass_equals_stepwise_on_random_inputs():
    model = tiny_model(tasks=["depth"], depth_parallel=True, soft_token_inputs=False)
    pixel_values = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(pixel_values, task="depth", output_hidden_states=True)
        state = AiTDecodingState(model.decoder, out.encoder_last_hidden_state, 16)
        positions = model.decoder.position_embeddings[TASK_IDS["depth"]]
        inputs = model.decoder.task_embeddings[TASK_IDS["depth"]][0]
        stepwise = []
        for i in range(16):
            stepwise.append(state.step((inputs + positions[i]).expand(2, -1)))
            inputs = model.decoder.parallel_query_embedding[0, 0]
    assert_close(out.decoder_hidden_states, torch.stack(stepwise, 1))


@pytest.mark.parametrize("task", ["depth", "instance_segmentation"])
def test_batched_decoding_equals_single(task):
    model = tiny_model()
    memory = torch.randn(3, 16, 16)
    with torch.no_grad():
        if task == "depth":
            start, end = model.config.vocabulary.depth_range()
            batched = model._decode_depth_autoregressive(memory, 16, start, end, None)
            singles = [model._decode_depth_autoregressive(m[None], 16, start, end, None) for m in memory]
            for got, parts in zip(batched, zip(*singles)):
                assert_close(got.float(), torch.cat(parts).float())
        else:
            batched = model._decode_objects(memory, task, True, None)
            singles = [model._decode_objects(m[None], task, True, None) for m in memory]
            assert torch.equal(batched.sequences, torch.cat([s.sequences for s in singles]))
            for name in ("decoder_hidden_states", "pred_scores", "mask_logits", "pred_masks"):
                assert_close(getattr(batched, name), torch.cat([getattr(s, name) for s in singles]))


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fixture_model(fixtures_dir, tmp_path_factory):
    cache = {}

    def load(case):
        if case not in cache:
            d = fixtures_dir / case
            out = tmp_path_factory.mktemp(case)
            convert(str(d / "checkpoint.pth"), str(d / "config.json"), str(out),
                    derived_buffers=str(d / "derived_buffers.npz"))  # fmt: skip
            model = AiTForDepthAndInstanceSegmentation.from_pretrained(out).eval()
            cache[case] = (model, np.load(d / "reference.npz"))
        return cache[case]

    return load


@pytest.mark.parametrize("case", ["depth_ar", "depth_ar_hard"])
def test_fixture_depth_decoding_equals_decoding_without_cache(fixture_model, case):
    """On the original's converted weights and encoder memory: cached fast decoding = no-cache decoding."""
    model, ref = fixture_model(case)
    memory = torch.from_numpy(ref["tf_memory"])
    n = 40  # a prefix keeps the quadratic no-cache reference quick
    start, end = model.config.vocabulary.depth_range()
    with torch.no_grad():
        hidden, logits, tokens = model._decode_depth_autoregressive(memory, n, start, end, None)
        ref_hidden, ref_logits, ref_tokens, _ = decode_without_cache(model, memory, "depth", n)
    assert_close(hidden, ref_hidden, 1e-4)
    assert_close(logits, torch.stack(ref_logits, 1), 1e-4)
    assert torch.equal(tokens, ref_tokens)
    assert torch.equal(tokens, torch.from_numpy(ref["pred_tokens"][:, :n]))


def test_fixture_object_decoding_equals_decoding_without_cache(fixture_model):
    model, ref = fixture_model("insseg")
    memory = torch.from_numpy(ref["tf_memory"])
    n = 2 * model.config.object_length("instance_segmentation")
    model.config.num_queries = 2
    with torch.no_grad():
        out = model._decode_objects(memory, "instance_segmentation", True, None)
        ref_hidden, _, ref_tokens, ref_scores = decode_without_cache(
            model, memory, "instance_segmentation", n
        )
    assert_close(out.decoder_hidden_states, ref_hidden, 1e-4)
    assert torch.equal(out.sequences, ref_tokens)
    assert_close(out.pred_scores, torch.stack(ref_scores, 1), 1e-4)


def test_fixture_parallel_one_pass_equals_stepwise(fixture_model):
    model, ref = fixture_model("depth_parallel")
    memory = torch.from_numpy(ref["tf_memory"])
    n = model.config.depth_tokenizer.num_tokens
    with torch.no_grad():
        ids = torch.zeros((memory.shape[0], n - 1), dtype=torch.long)
        one_pass = model.decoder(model._embed_inputs("depth", ids), memory)
        state = AiTDecodingState(model.decoder, memory, n)
        embeds = model._embed_inputs("depth", ids)
        stepwise = torch.stack([state.step(embeds[:, i]) for i in range(n)], 1)
    assert_close(one_pass, stepwise, 1e-4)


# ---------------------------------------------------------------------------------------- sampling
def nucleus_reference(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Renormalised nucleus probabilities the way the original filters logits (sort, cumsum, shift)."""
    sorted_logits, sorted_idx = logits.sort(descending=True)
    remove = sorted_logits.softmax(-1).cumsum(-1) > top_p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    filtered = logits.clone()
    filtered.scatter_(-1, sorted_idx, sorted_logits.masked_fill(remove, float("-inf")))
    return filtered.softmax(-1)


@pytest.mark.parametrize("top_p", [0.3, 0.9])
def test_nucleus_sampling_matches_the_renormalised_nucleus(top_p):
    torch.manual_seed(0)
    logits = torch.randn(3, 12) * 1.5
    expected = nucleus_reference(logits, top_p)
    draws = 20000
    tokens = sample_tokens(logits.repeat_interleave(draws, 0), top_p, torch.Generator().manual_seed(1))
    counts = torch.stack([torch.bincount(t, minlength=12) for t in tokens.view(3, draws)]).float() / draws
    assert ((counts > 0) <= (expected > 0)).all(), "a token outside the nucleus was drawn"
    assert (counts - expected).abs().max() < 0.015  # ~4 standard deviations at 20000 draws


def test_sampling_is_reproducible_and_batch_vectorised():
    logits = torch.randn(5, 300)
    first = sample_tokens(logits, 0.5, torch.Generator().manual_seed(3))
    again = sample_tokens(logits, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and first.shape == (5,)
    assert torch.equal(sample_tokens(logits, 1e-9, torch.Generator()), logits.argmax(-1))


# ---------------------------------------------------------------------------------------- backbone
def tiny_backbone(attn: str) -> AiTSwinV2Backbone:
    torch.manual_seed(0)
    model = AiTSwinV2Backbone(embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_sizes=[6, 6],
                              pretrained_window_sizes=[4, 4], out_indices=[0, 1], attn_implementation=attn,
                              post_norm_init=1.0)  # fmt: skip
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "logit_scale"):
                module.logit_scale.normal_(1.5, 0.5)
    return model.eval()


def test_backbone_scratch_buffer_changes_no_number(monkeypatch):
    """Inference with the shared scratch for the gathered bias equals fresh tensors per layer, bit for bit."""
    x = torch.randn(2, 3, 76, 52)  # padded windows and shifts in both stages
    for attn in ("eager", "sdpa"):
        model = tiny_backbone(attn)
        with torch.no_grad():
            first = model(x).feature_maps
            second = model(x).feature_maps
        with torch.inference_mode():
            third = model(x).feature_maps
        with monkeypatch.context() as patch, torch.no_grad():
            patch.setattr(
                _ScratchBuffer, "get", lambda self, numel, dtype, device: torch.empty(numel, dtype=dtype)
            )
            reference = model(x).feature_maps
        for a, b, c, r in zip(first, second, third, reference):
            assert torch.equal(a, r) and torch.equal(b, r) and torch.equal(c, r)
        if (
            attn == "eager"
        ):  # the autograd path gathers fresh tensors too (sdpa may pick another kernel there)
            for a, r in zip(first, model(x).feature_maps):
                assert torch.equal(a, r)


def test_backbone_sdpa_equals_eager_with_padding():
    x = torch.randn(2, 3, 76, 52)
    with torch.no_grad():
        eager = tiny_backbone("eager")(x).feature_maps
        sdpa = tiny_backbone("sdpa")(x).feature_maps
    for a, b in zip(eager, sdpa):
        assert_close(a, b, 1e-4)


def test_backbone_scratch_is_shared_and_copied_fresh():
    import copy

    model = tiny_backbone("sdpa")
    scratches = {id(m._scratch) for m in model.modules() if hasattr(m, "_scratch")}
    assert len(scratches) == 1
    model._scratch.get(64, torch.float32, torch.device("cpu"))  # as during a forward
    clone = copy.deepcopy(model)
    attention = clone.encoder.layers[0].blocks[0].attention
    assert (
        attention._scratch.buffer is None
        and attention._scratch is not model.encoder.layers[0].blocks[0].attention._scratch
    )
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(clone(x).feature_maps[-1], model(x).feature_maps[-1])


def test_backbone_scratch_is_emptied_after_each_forward(monkeypatch):
    """The shared position-bias buffer serves the layers of one call, then is released: kept, the deepest
    stage's bias (52 MB at 480x480) would sit beside the next call's largest activations."""
    model = tiny_backbone("sdpa")
    sizes = []
    get = _ScratchBuffer.get

    def spy(self, numel, dtype, device):
        sizes.append(numel)
        return get(self, numel, dtype, device)

    monkeypatch.setattr(_ScratchBuffer, "get", spy)
    with torch.inference_mode():
        model(torch.randn(1, 3, 48, 48))
    assert sizes and model._scratch.buffer is None


# ---------------------------------------------------------------------------------------- threads
def test_decoding_threads_are_restored():
    from ait_hf.modeling_ait import intra_op_threads

    before = torch.get_num_threads()
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    with pytest.raises(RuntimeError), intra_op_threads(1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    model = tiny_model(tasks=["depth"])
    start, end = model.config.vocabulary.depth_range()
    memory = torch.randn(2, 16, 16)
    with torch.no_grad():
        single = model._decode_depth_autoregressive(memory, 16, start, end, None)
        model.decode_num_threads = None
        default = model._decode_depth_autoregressive(memory, 16, start, end, None)
    assert torch.get_num_threads() == before
    assert_close(single[1], default[1])
    assert torch.equal(single[2], default[2])


# ---------------------------------------------------------------------------------------- torch.compile
@pytest.fixture
def fresh_dynamo():
    """Forget earlier compiled graphs: each test variant compiles its own step graph, and dynamo falls back to
    eager once one function has more than `recompile_limit` graphs (which the graph counts below would catch)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("matrix_vector", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_static_step_equals_fast_step(batch, matrix_vector, masked):
    """The forms that `decode_compiled` compiles (0-d position tensors; self-attention through the
    `ait_hf::attend_decoding_cache` operator, or `masked`: the whole zeroed cache attended with later positions
    masked) run eagerly equal the sliced-cache fast step, with `addmm` projections and with the multiply-and-sum
    ones (`matrix_vector`, (out, in) weights) that the compiled batch-1 step uses."""
    from ait_hf.modeling_ait import decoder_layers_step

    model = tiny_model(tasks=["depth"])
    memory = torch.randn(batch, 16, 16)
    with torch.no_grad():
        fast = AiTDecodingState(model.decoder, memory, 12, fast=True)
        static = AiTDecodingState(model.decoder, memory, 12, fast=True)
        static_constants = [
            layer.step_constants(kv, matrix_vector)
            for layer, kv in zip(model.decoder.layers, static.memory_kv)
        ]
        for cache in static.cache:
            cache.zero_()
        positions = torch.arange(12)
        for t in range(12):
            x = torch.randn(batch, 16)
            expected = decoder_layers_step(x, t, None, fast.constants, fast.cache, fast.num_heads)
            actual = decoder_layers_step(
                x, positions[t], positions if masked else None, static_constants, static.cache,
                static.num_heads, matrix_vector,
            )  # fmt: skip
            assert_close(actual, expected)
        for static_cache, fast_cache in zip(static.cache, fast.cache):
            assert_close(static_cache, fast_cache)


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler"
)
@pytest.mark.parametrize("task", ["depth", "instance_segmentation"])
@pytest.mark.parametrize("masked", [False, True])
def test_compiled_decoding_equals_decoding_without_cache(task, masked, monkeypatch, fresh_dynamo):
    """`model.decode_compiled = True` (batch 1: the step through `torch.compile`; larger batches: the eager
    step) decodes what the straightforward decoder computes, with self-attention through the operator (long
    sequences) and `masked` (the static form)."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(modeling_ait, "STATIC_ATTENTION_MAX_LENGTH", 10**6 if masked else 0)
    graphs, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    model = tiny_model()
    model.decode_compiled = True
    for batch in (1, 2):
        memory = torch.randn(batch, 16, 16)
        with torch.no_grad():
            if task == "depth":
                start, end = model.config.vocabulary.depth_range()
                hidden, logits, tokens = model._decode_depth_autoregressive(memory, 16, start, end, None)
                ref_hidden, ref_logits, ref_tokens, _ = decode_without_cache(model, memory, "depth", 16)
                assert_close(logits, torch.stack(ref_logits, 1))
            else:
                out = model._decode_objects(memory, task, True, None)
                hidden, tokens = out.decoder_hidden_states, out.sequences
                total = model.config.num_queries * model.config.object_length(task)
                ref_hidden, _, ref_tokens, ref_scores = decode_without_cache(model, memory, task, total)
                assert_close(out.pred_scores, torch.stack(ref_scores, 1))
        assert_close(hidden, ref_hidden)
        assert torch.equal(tokens, ref_tokens)
        # batch 1 ran compiled (one graph, no graph break), not through the eager fallback; batch 2 eagerly
        assert counters["stats"]["unique_graphs"] - graphs == 1
    assert sum(counters["graph_break"].values()) == breaks


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler"
)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_compiled_state_equals_fast_step(batch, masked, monkeypatch, fresh_dynamo):
    """The compiled step (`AiTDecodingState(compiled=True)`: multiply-and-sum projections at batch 1, `addmm`
    at larger batches, which it also serves) equals the eager fast step position by position, with
    self-attention through the operator (sequences longer than `STATIC_ATTENTION_MAX_LENGTH`) and `masked`."""
    monkeypatch.setattr(modeling_ait, "STATIC_ATTENTION_MAX_LENGTH", 12 if masked else 11)
    model = tiny_model(tasks=["depth"])
    memory = torch.randn(batch, 16, 16)
    with torch.no_grad():
        fast = AiTDecodingState(model.decoder, memory, 12, fast=True)
        compiled = AiTDecodingState(model.decoder, memory, 12, compiled=True)
        assert compiled.matrix_vector == (batch == 1)
        assert (compiled.attention_positions is not None) == masked
        for _ in range(12):
            x = torch.randn(batch, 16)
            assert_close(compiled.step(x), fast.step(x))


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler"
)
def test_interleaved_compiled_states_keep_their_graphs(fresh_dynamo):
    """Steps after the first skip dynamo's non-differentiating guards (`skip_guard_eval_unsafe`); two compiled
    states of different lengths and batch sizes stepped in turn must still each run their own graph."""
    model = tiny_model(tasks=["depth"])
    memories = [torch.randn(1, 16, 16), torch.randn(2, 16, 16)]
    with torch.no_grad():
        states = [
            (
                AiTDecodingState(model.decoder, m, n, compiled=True),
                AiTDecodingState(model.decoder, m, n, fast=True),
            )
            for m, n in zip(memories, (10, 14))
        ]
        for _ in range(10):
            for compiled, fast in states:
                x = torch.randn(fast.batch, 16)
                assert_close(compiled.step(x), fast.step(x))
