"""End-to-end CPU inference with and without fastnorm.torch.optimize.

    python benchmarks/torch_models.py [--threads 2] [--rounds 15] [--model NAME] [--quick]

Hugging Face transformers ResNet-50, ConvNeXt-T, ViT-B/16 and a small Llama, built from
their configs (random weights, no download), and a style-transfer network with InstanceNorm2d
(the image transformation network of Johnson et al., 2016), each timed under
torch.inference_mode() with the same number of threads for PyTorch and fastnorm. Rounds of
the plain and the optimized model alternate (A B B A ...) after a warm-up, and the figures
are medians. The share of the plain forward spent in the norm modules (forward hooks,
after the timed rounds) bounds what optimize can give: 1 / (1 - share). Before timing, the optimized model's output is checked against the plain one's
and every norm module is checked to have run fastnorm. Needs torch; the transformers
models are skipped when transformers is not installed. --quick: small configs, few rounds
(a smoke test, not a measurement).
"""
import argparse
import os
import statistics
import sys
import time


def _cpu_busy(seconds=0.5):
    """The share of CPU time other processes used over `seconds` (Linux; None elsewhere):
    printed beside each row, as these machines may be shared."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]           # total, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


# ---------------------------------------------------------------------------------------
# the style-transfer network (InstanceNorm2d between convolutions)

def style_transfer_net(nn, width=32, blocks=5):
    """Johnson et al.'s image transformation network: 3 downsampling convolutions, residual
    blocks, 2 upsampling convolutions, InstanceNorm2d(affine) after each but the last."""

    class Conv(nn.Sequential):
        def __init__(self, cin, cout, kernel, stride=1, upsample=None):
            layers = [nn.Upsample(scale_factor=upsample, mode="nearest")] if upsample else []
            layers += [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
            super().__init__(*layers)

    class Residual(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.in1 = Conv(c, c, 3), nn.InstanceNorm2d(c, affine=True)
            self.conv2, self.in2 = Conv(c, c, 3), nn.InstanceNorm2d(c, affine=True)

        def forward(self, x):
            y = self.in1(self.conv1(x)).relu()
            return x + self.in2(self.conv2(y))

    w = width
    return nn.Sequential(
        Conv(3, w, 9), nn.InstanceNorm2d(w, affine=True), nn.ReLU(),
        Conv(w, 2 * w, 3, 2), nn.InstanceNorm2d(2 * w, affine=True), nn.ReLU(),
        Conv(2 * w, 4 * w, 3, 2), nn.InstanceNorm2d(4 * w, affine=True), nn.ReLU(),
        *[Residual(4 * w) for _ in range(blocks)],
        Conv(4 * w, 2 * w, 3, upsample=2), nn.InstanceNorm2d(2 * w, affine=True), nn.ReLU(),
        Conv(2 * w, w, 3, upsample=2), nn.InstanceNorm2d(w, affine=True), nn.ReLU(),
        Conv(w, 3, 9),
    )


# ---------------------------------------------------------------------------------------
# the models: name -> (label, build(torch, quick) -> (model, input))

def _images(torch, n, size):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def _resnet(torch, tr, quick):
    config = (tr.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1])
              if quick else tr.ResNetConfig())                  # ResNet-50
    return tr.ResNetForImageClassification(config), _images(torch, 1, 64 if quick else 224)


def _convnext(torch, tr, quick):
    config = (tr.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2)
              if quick else tr.ConvNextConfig())                # ConvNeXt-T
    return tr.ConvNextForImageClassification(config), _images(torch, 1, 64 if quick else 224)


def _vit(torch, tr, quick):
    config = (tr.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, image_size=32, patch_size=8)
              if quick else tr.ViTConfig())                     # ViT-B/16, 224x224
    return tr.ViTForImageClassification(config), _images(torch, 1, 32 if quick else 224)


def _llama(torch, tr, quick):
    if quick:
        config = tr.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, vocab_size=101)
        seq = 8
    else:       # a small Llama: 8 layers of width 512, a prompt of 128 tokens
        config = tr.LlamaConfig(hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                                num_attention_heads=8, num_key_value_heads=8,
                                vocab_size=32000)
        seq = 128
    ids = torch.randint(0, config.vocab_size, (1, seq),
                        generator=torch.Generator().manual_seed(0))
    return tr.LlamaForCausalLM(config), ids


STYLE_WIDTH = 32        # channels of the first layer (Johnson et al.: 32); --style-width


def _style(torch, tr, quick):
    net = style_transfer_net(torch.nn, width=8 if quick else STYLE_WIDTH,
                             blocks=1 if quick else 5)
    return net, _images(torch, 1, 32 if quick else 256)


MODELS = {
    "resnet": ("HF ResNet-50 (BatchNorm2d)", _resnet, True),
    "convnext": ("HF ConvNeXt-T (ConvNextLayerNorm, LayerNorm)", _convnext, True),
    "vit": ("HF ViT-B/16 (LayerNorm)", _vit, True),
    "llama": ("HF Llama 8x512, 128 tokens (LlamaRMSNorm)", _llama, True),
    "style": ("style transfer (InstanceNorm2d)", _style, False),
}


# ---------------------------------------------------------------------------------------
# timing

def _output(result):
    return getattr(result, "logits", result)


def _time_once(torch, model, x):
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def norm_share(torch, model, x, names, rounds=5):
    """The share of the plain model's forward spent inside its norm modules `names` (the
    ones optimize takes over), timed by forward hooks over `rounds` forwards outside the
    timed rounds, and the speed-up the model would have if they took no time at all
    (Amdahl's bound: 1 / (1 - share)): what optimize can do at most."""
    inside = [0.0]
    modules = dict(model.named_modules())
    handles = []
    for n in names:
        m = modules[n]

        def pre(module, args):
            module._fastnorm_bench_t0 = time.perf_counter()

        def post(module, args, out):
            inside[0] += time.perf_counter() - module._fastnorm_bench_t0
        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        total = 0.0
        for _ in range(rounds):
            total += _time_once(torch, model, x)
    finally:
        for h in handles:
            h.remove()
    share = inside[0] / total
    return share, 1.0 / max(1.0 - share, 1e-9)


def measure(name, *, quick=False, rounds=15, warmup=3, channels_last=False):
    """One model: a dict with the label, the input, the norm modules taken over, the max
    abs difference of the outputs and the median times without and with optimize.
    channels_last: the model and an image input in torch.channels_last memory."""
    import torch
    import fastnorm.torch as fnt
    label, build, needs_transformers = MODELS[name]
    tr = None
    if needs_transformers:
        import transformers as tr
    torch.manual_seed(0)
    model, x = build(torch, tr, quick)
    model = model.eval()
    if channels_last and x.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fast = fnt.optimize(model)
    with torch.inference_mode():
        diff = float((_output(fast(x)) - _output(model(x))).abs().max())
        rep = fnt.report(fast)
        fastnorm_calls = sum(e.fastnorm_calls for e in rep.taken)
        own_calls = sum(sum(e.own_calls.values()) for e in rep.taken)
        own_reasons = sorted({r for e in rep.taken for r in e.own_calls})
        for _ in range(warmup):
            model(x)
            fast(x)
        plain, optimized = [], []
        for i in range(rounds):           # A B B A ...: neither always runs second
            if i % 2 == 0:
                plain.append(_time_once(torch, model, x))
                optimized.append(_time_once(torch, fast, x))
            else:
                optimized.append(_time_once(torch, fast, x))
                plain.append(_time_once(torch, model, x))
        share, bound = norm_share(torch, model, x, [e.name for e in rep.taken],
                                  rounds=1 if quick else 5)
    types = sorted({e.type for e in rep.taken})
    layout = " CL" if channels_last and x.dim() == 4 else ""
    if name == "style" and not quick:
        label = f"style transfer, width {STYLE_WIDTH} (InstanceNorm2d)"
    return {"name": name, "label": label, "input": "x".join(map(str, x.shape)) + layout,
            "taken": len(rep.taken), "types": types, "fastnorm_calls": fastnorm_calls,
            "own_calls": own_calls, "own_reasons": own_reasons,
            "left_alone": [(e.name, e.type, e.reason) for e in rep.left_alone],
            "max_abs_diff": diff, "norm_share": share, "bound": bound,
            "plain_s": statistics.median(plain),
            "optimized_s": statistics.median(optimized)}


def main(argv=None):
    global STYLE_WIDTH
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--model", choices=list(MODELS), action="append",
                   help="only this model (repeatable)")
    p.add_argument("--quick", action="store_true", help="small configs, 2 rounds (smoke test)")
    p.add_argument("--channels-last", action="store_true",
                   help="image models and inputs in torch.channels_last memory")
    p.add_argument("--style-width", type=int, default=STYLE_WIDTH,
                   help=f"first-layer channels of the style-transfer network "
                        f"(default {STYLE_WIDTH})")
    args = p.parse_args(argv)
    STYLE_WIDTH = args.style_width
    os.environ["OMP_NUM_THREADS"] = str(args.threads)      # fastnorm's OpenMP default
    import torch
    import fastnorm
    from fastnorm._bench.machine import cpu_model
    torch.set_num_threads(args.threads)
    names = args.model or list(MODELS)
    try:
        import transformers
        tr_version = transformers.__version__
    except ImportError:
        tr_version = None
        skipped = [n for n in names if MODELS[n][2]]
        names = [n for n in names if not MODELS[n][2]]
        if skipped:
            print(f"transformers is not installed: skipping {', '.join(skipped)}")
    rounds = 2 if args.quick else args.rounds
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); {args.threads} threads for "
          f"PyTorch and fastnorm")
    print(f"fastnorm {fastnorm.__version__} (kernels {fastnorm.build_info().get('kernel_variant', '?')}), "
          f"torch {torch.__version__}, transformers {tr_version}; torch.inference_mode(), "
          f"medians of {rounds} interleaved rounds")
    print()
    header = f"{'model':48s} {'input':>16s} {'norms':>5s} {'calls':>7s} {'plain':>10s} " \
             f"{'optimize':>10s} {'speed-up':>8s} {'share':>6s} {'bound':>6s} {'max |diff|':>10s} " \
             f"{'busy':>5s}"
    print(header)
    print("-" * len(header))
    results = []
    ok = True
    for name in names:
        busy = _cpu_busy()
        r = measure(name, quick=args.quick, rounds=rounds, warmup=1 if args.quick else 3,
                    channels_last=args.channels_last)
        r["cpu_busy_before"] = busy
        results.append(r)
        good = r["max_abs_diff"] < 1e-3
        ok &= good
        calls = f"{r['fastnorm_calls']}/{r['own_calls']}"
        print(f"{r['label']:48s} {r['input']:>16s} {r['taken']:5d} {calls:>7s} "
              f"{r['plain_s'] * 1e3:8.2f}ms {r['optimized_s'] * 1e3:8.2f}ms "
              f"{r['plain_s'] / r['optimized_s']:7.2f}x {r['norm_share']:6.1%} "
              f"{format(r['bound'], '5.2f') + 'x' if r['fastnorm_calls'] else '-':>6s} "
              f"{r['max_abs_diff']:10.1e} "
              f"{'' if busy is None else format(busy, '5.0%')}"
              + ("" if good else "  CHECK FAILED"), flush=True)
    print("\nnorms: modules taken over; share: their share of the plain forward's time (forward "
          "hooks, outside the timed rounds); bound: the speed-up if they took no time (1 / (1 - share)), "
          "the most optimize can give by the time spent inside those modules (a module's output "
          "layout can cost the next layer time, which the share does not count); - where no "
          "call ran fastnorm; calls: norm calls of the first (checked) forward that "
          "ran fastnorm / the module's own forward; busy: CPU used by other processes just "
          "before the row")
    for r in results:
        if r["own_reasons"]:
            print(f"{r['name']}: own forward: " + "; ".join(r["own_reasons"]))
        if r["left_alone"]:
            print(f"{r['name']}: left alone: " + "; ".join(f"{n} {t}: {why}"
                                                          for n, t, why in r["left_alone"]))
    return (0 if ok else 1), results


if __name__ == "__main__":
    sys.exit(main()[0])
