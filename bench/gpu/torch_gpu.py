#!/usr/bin/env python3
"""PyTorch reference for jemc's GPU benchmark (bench/gpu/run.sh).

Times, on one CUDA GPU, the JEM training iteration that jemc's `train_step`
program computes -- draw a batch of chains from a 10,000-entry replay buffer
(5% restarted from uniform noise), K SGLD steps (x += dE/dx + 0.01 N(0,1)),
write them back, one Adam step (lr 1e-4) on cross-entropy + E(x) - E(x_q) --
in the PyTorch configurations the jemc issue names, and SGLD sampling
throughput. Prints one line per measurement:

    RESULT <model> <config> <seconds per call> <peak MiB> [<image-steps per s>]

Models are tests/parity/torch_ref.py's (the same networks as jemc's graphs:
jem_mnist, jem_wrn28 without normalisation). Configurations:
  eager-tf32          eager, NCHW, TF32 convolutions and matmuls (the official JEM style)
  compile-tf32-cl     torch.compile, channels-last, TF32
  eager-bf16-cl       eager, bf16 autocast, channels-last
  compile-bf16-cl     torch.compile, bf16 autocast, channels-last
  graph-bf16-cl       eager bf16, the K-step SGLD loop captured as one CUDA graph
  compile-ro-bf16-cl  torch.compile(mode="reduce-overhead"), bf16, channels-last
  fp32                eager, no TF32 (for --precision fp32)
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "parity"))
import torch_ref  # noqa: E402

CONFIGS = ["eager-tf32", "compile-tf32-cl", "eager-bf16-cl", "compile-bf16-cl", "graph-bf16-cl", "compile-ro-bf16-cl", "fp32"]


def build(model, depth, widen, dev):
    ns = argparse.Namespace(model=model, depth=depth, widen=widen, classes=10, mlp_in=8, hidden=[32])
    torch.manual_seed(0)
    return torch_ref.build_model(ns).float().to(dev), [1, 28, 28] if model == "mnist" else [3, 32, 32]


class Step:
    """One JEM iteration in one configuration."""

    def __init__(self, net, shape, batch, K, cfg, dev):
        self.cfg, self.K, self.batch, self.shape = cfg, K, batch, [batch] + shape
        self.bf16 = "bf16" in cfg
        self.cl = cfg.endswith("-cl") and len(shape) == 3
        fmt = torch.channels_last if self.cl else torch.contiguous_format
        self.net = net.to(memory_format=fmt)
        tf32 = cfg != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True
        if cfg.startswith("compile"):
            mode = "reduce-overhead" if "-ro-" in cfg else "default"
            self.f = torch.compile(self.net, mode=mode)
        else:
            self.f = self.net
        self.buf = torch.rand([10000] + shape, device=dev) * 2 - 1
        self.x = torch.rand(self.shape, device=dev) * 2 - 1
        self.y = torch.randint(10, (batch,), device=dev)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-4)
        self.dev = dev
        self.graph = None

    def logits(self, x):
        if self.cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            return self.f(x).float()

    def sgld(self, x_k):
        for _ in range(self.K):
            x_k = x_k.detach().requires_grad_(True)
            g = torch.autograd.grad(torch.logsumexp(self.logits(x_k), 1).sum(), [x_k])[0]
            x_k = x_k.detach() + g + 0.01 * torch.randn_like(x_k)
        return x_k.detach()

    def capture(self):
        """the SGLD loop as one CUDA graph over a static chain tensor"""
        self.x_static = torch.zeros(self.shape, device=self.dev)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                self.sgld(self.x_static)
        torch.cuda.current_stream().wait_stream(s)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.x_out = self.sgld(self.x_static)

    def __call__(self):
        b = self.batch
        idx = torch.randint(0, 10000, (b,), device=self.dev)
        restart = (torch.rand([b] + [1] * (len(self.shape) - 1), device=self.dev) < 0.05).float()
        x0 = restart * (torch.rand(self.shape, device=self.dev) * 2 - 1) + (1 - restart) * self.buf[idx]
        if self.cfg.startswith("graph"):
            if self.graph is None:
                self.capture()
            self.x_static.copy_(x0)
            self.graph.replay()
            x_q = self.x_out.clone()
        else:
            x_q = self.sgld(x0)
        self.buf[idx] = x_q
        f_x, f_q = self.logits(self.x), self.logits(x_q)
        loss = F.cross_entropy(f_x, self.y) + (-torch.logsumexp(f_x, 1)).mean() - (-torch.logsumexp(f_q, 1)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), torch.cuda.max_memory_allocated() / 2**20


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["mnist", "wrn"], default="wrn")
    ap.add_argument("--depth", type=int, default=28)
    ap.add_argument("--widen", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="SGLD steps per iteration (K)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sample", action="store_true", help="SGLD sampling throughput instead (chains = --batch)")
    a = ap.parse_args()
    dev = torch.device("cuda")
    label = "mnist" if a.model == "mnist" else "wrn-%d-%d" % (a.depth, a.widen)
    for cfg in a.configs.split(","):
        torch._dynamo.reset() if hasattr(torch, "_dynamo") else None
        net, shape = build(a.model, a.depth, a.widen, dev)
        st = Step(net, shape, a.batch, a.steps, cfg, dev)
        try:
            if a.sample:
                x0 = torch.rand(st.shape, device=dev) * 2 - 1
                if cfg.startswith("graph"):
                    st.capture()
                    def run():
                        st.x_static.copy_(x0)
                        st.graph.replay()
                else:
                    def run():
                        st.sgld(x0)
                sec, mib = timed(run, a.warmup, a.reps)
                print("RESULT %s sample-%s %.6f %.1f %.0f" % (label, cfg, sec, mib, a.batch * a.steps / sec), flush=True)
            else:
                sec, mib = timed(st, a.warmup, a.reps)
                print("RESULT %s %s %.6f %.1f" % (label, cfg, sec, mib), flush=True)
        except Exception as e:  # a configuration this torch cannot run is reported, not fatal
            print("RESULT %s %s failed %s" % (label, cfg, str(e).splitlines()[0][:200] if str(e) else type(e).__name__), flush=True)
        del st, net
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
