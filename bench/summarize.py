#!/usr/bin/env python3
"""Summarizes a bench/run_all.sh output folder as Markdown: kiln beside oneDNN and LibTorch."""
import json
import os
import re
import sys


def gbench(path, stat="median"):
    """name -> benchmark dict for aggregate `stat`, with b["min"], b["max"] the min/max rows."""
    if not os.path.exists(path):
        return {}
    rows = {}
    for b in json.load(open(path))["benchmarks"]:
        name = re.sub(r"_(mean|median|stddev|cv|min|max)$", "", b["name"])
        rows.setdefault(name, {})[b.get("aggregate_name", stat)] = b
    out = {}
    for name, agg in rows.items():
        if stat in agg:
            out[name] = dict(agg[stat], min=agg.get("min", agg[stat]), max=agg.get("max", agg[stat]))
    return out


def spread(b, key, fmt="{:.1f}"):
    """median (min-max) of a counter or time."""
    return (fmt + " ({}-{})").format(b[key], fmt.format(b["min"][key]), fmt.format(b["max"][key]))


def args(name):
    return dict(re.findall(r"(\w+):(\d+)", name))


def lines(path):
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []


def context(path):
    """The machine a Google Benchmark JSON was measured on: (cpu_model, cpu_isa, peak kernel)."""
    if not os.path.exists(path):
        return None
    c = json.load(open(path)).get("context", {})
    return (c.get("cpu_model", "unknown CPU"), c.get("cpu_isa", "?"), c.get("fp32_peak_kernel", "?"))


def machines(d):
    """file -> machine for every result in d (train JSONL lines carry cpu_model / cpu_isa)."""
    m = {}
    for f in ("peak", "matmul", "kiln_overhead", "torch_overhead"):
        c = context(f"{d}/{f}.json")
        if c:
            m[f + ".json"] = c[:2]
    for f in ("kiln_train_mlp", "kiln_train_cnn", "torch_train_mlp", "torch_train_cnn"):
        for x in lines(f"{d}/{f}.jsonl"):
            m[f + ".jsonl"] = (x.get("cpu_model", "unknown CPU"), x.get("cpu_isa", "?"))
    return m


def main(d):
    ctx = context(f"{d}/peak.json") or ("unknown CPU", "?", "?")
    cpu = f"{ctx[0]}, {ctx[1]}"
    print(f"Machine: {ctx[0]} (widest ISA {ctx[1]}); FP32 peak kernel: {ctx[2]}\n")
    others = {f: c for f, c in machines(d).items() if c != ctx[:2]}
    for f, c in sorted(others.items()):
        print(f"**warning**: {f} was measured on {c[0]} ({c[1]}), not on the machine above\n")

    p = gbench(f"{d}/peak.json")
    peak = {args(n)["threads"]: b["GFLOPS"] for n, b in p.items()}
    print(f"FP32 peak on {cpu} ({ctx[2]} FMA): {peak.get('1', 0):.1f} GFLOP/s on 1 thread, "
          f"{peak.get('2', 0):.1f} on 2\n")

    both = gbench(f"{d}/matmul.json")
    kiln = {n: b for n, b in both.items() if n.startswith("BM_Kiln")}
    dnnl = {n: b for n, b in both.items() if n.startswith("BM_OneDNN")}
    torch = gbench(f"{d}/torch_overhead.json")
    def by_shape(rows):
        r = {}
        for n, b in rows.items():
            a = args(n)
            if "M" in a:
                r[(a["M"], a["K"], a["N"], a["threads"])] = b
        return r
    k, o, t = by_shape(kiln), by_shape(dnnl), by_shape(torch)
    print(f"| matmul MxKxN ({cpu}) | threads | kiln GFLOP/s median (min-max) | oneDNN direct | kiln / oneDNN | kiln peak fraction | LibTorch* | kiln / LibTorch |")
    print("|---|---|---|---|---|---|---|---|")
    for key in sorted(k, key=lambda s: (int(s[3]), int(s[0]) * int(s[1]) * int(s[2]))):
        M, K, N, th = key
        kg = k[key]["GFLOPS"]
        og = o.get(key, {}).get("GFLOPS", float("nan"))
        tg = t.get(key, {}).get("GFLOPS", float("nan"))
        print(f"| {M}x{K}x{N} | {th} | {spread(k[key], 'GFLOPS')} | {og:.1f} | {kg / og:.2f} | {kg / peak[th]:.2f} | {tg:.1f} | {kg / tg:.2f} |")

    ko = gbench(f"{d}/kiln_overhead.json")
    def t_of(rows, prefix, arg=None, which=None):
        for n, b in rows.items():
            if n.startswith(prefix) and (arg is None or n.split("/")[1] == arg):
                scale = {"ns": 1e-3, "us": 1, "ms": 1e3}[b["time_unit"]]
                return (b[which] if which else b)["real_time"] * scale
        return float("nan")
    def t_spread(rows, prefix, arg=None):
        return "{:.3f} us ({:.3f}-{:.3f})".format(t_of(rows, prefix, arg), t_of(rows, prefix, arg, "min"), t_of(rows, prefix, arg, "max"))
    print(f"\n| eager overhead (1 thread, {cpu}), median (min-max) | kiln | LibTorch* | kiln / LibTorch |\n|---|---|---|---|")
    ka, ta = t_of(ko, "BM_KilnAdd1"), t_of(torch, "BM_TorchAdd1")
    print(f"| a + b, 1-element tensors | {t_spread(ko, 'BM_KilnAdd1')} | {t_spread(torch, 'BM_TorchAdd1')} | {ka / ta:.2f} |")
    for n in ("n:1", "n:16"):
        ks, ts = t_of(ko, "BM_KilnAutogradStep", n), t_of(torch, "BM_TorchAutogradStep", n)
        print(f"| autograd step y = sum(w*x), {n} | {t_spread(ko, 'BM_KilnAutogradStep', n)} | {t_spread(torch, 'BM_TorchAutogradStep', n)} | {ks / ts:.2f} |")

    print(f"\n| training (batch 64, Adam 1e-3, 2 threads, {cpu}) | epochs | kiln s/epoch | kiln ms/step | LibTorch* s/epoch | kiln / LibTorch | kiln test acc. | LibTorch test acc. |")
    print("|---|---|---|---|---|---|---|---|")
    for m in ("mlp", "cnn"):
        kl, tl = lines(f"{d}/kiln_train_{m}.jsonl"), lines(f"{d}/torch_train_{m}.jsonl")
        if not kl:
            continue
        ks = sum(x["seconds"] for x in kl) / len(kl)
        kms = sum(x["ms_per_step"] for x in kl) / len(kl)
        ts = sum(x["seconds"] for x in tl) / len(tl) if tl else float("nan")
        accs = "/".join(f"{x['val_accuracy']:.4f}" for x in kl)
        taccs = "/".join(f"{x['val_accuracy']:.4f}" for x in tl) if tl else "-"
        print(f"| {m} | {len(kl)} | {ks:.2f} | {kms:.2f} | {ts:.2f} | {ks / ts:.2f} | {accs} | {taccs} |")
    print("\n*LibTorch 1.13 (Debian) at its best: OpenBLAS OpenMP build, OPENBLAS_CORETYPE and "
          "OPENBLAS_L2_SIZE unset, OPENBLAS_NUM_THREADS=1 (peer runs only).")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
