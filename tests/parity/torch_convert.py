#!/usr/bin/python3
"""References for tests/t_convert.c (tools/convert_pt.py against the official model classes).

    torch_convert.py make --depth 10 --widen 1 --classes 10 --buffer 20 --batch 8 --records 16 --out DIR
        DIR/official.pt     {"model_state_dict": CCF.state_dict(), "replay_buffer": [buffer, 3, 32, 32]}
                            (tests/parity/jem_official.py, random weights, seed --seed)
        DIR/official_jempp.pt  the same in JEM++'s / SADA-JEM's layout (no f.linear)
        DIR/official_dp.pt  the same saved from nn.DataParallel (every key "module.KEY")
        DIR/inputs.safetensors    x: [batch, 3, 32, 32], the first records of DIR/test.bin
        DIR/expected.safetensors  logits = CCF.classify(x), energy = -CCF(x), replay_buffer
        DIR/test.bin        a CIFAR-10 binary file of --records images; labels: the model's argmax
                            for the first half, argmax + 1 for the rest, so the accuracy is 0.5 exactly
        DIR/expected_eval.safetensors  accuracy, loss (mean CE), energy (mean E) over test.bin
        DIR/bad_missing.pt, bad_shape.pt, bad_key.pt, not_a_pt.pt: inputs to refuse
        (batch-norm checkpoints convert now: jem_official.py make-bn writes them)
        DIR/vera.pt         a checkpoint as VERA's train.py save_ckpt writes it (tests/parity/vera_official.py):
                            model.logp_net = JEM(Wide_ResNet(depth, widen, classes, dropout .3)), model.g =
                            VERAGenerator(ResNetGenerator(feats 16)), Adam states after one step,
                            MultiStepLR states (a collections.Counter inside), epoch/itr/metric lists
        DIR/expected_vera.safetensors  logits = JEM.classify(x), energy = -JEM(x) on inputs.safetensors;
                            mean_batch = G(h) with batch statistics (train(): how VERA samples),
                            mean_eval = G(h) with running statistics (eval()), h = gen_inputs.safetensors'
                            [batch, 128]; logsigma, post_logsigma (the generator's batch norms, logsigma and
                            post_logsigma are set to random values, so that a swapped name shows)
        DIR/gen_inputs.safetensors  h: [batch, 128]
        DIR/bad_vera_norm.pt, bad_vera_nologp.pt, bad_vera_key.pt, bad_vera_gmissing.pt (no
                            model.g.g.output_bn.running_var): VERA inputs to refuse
        DIR/bad_vera_code.pt   vera.pt plus an object whose unpickling would run `touch DIR/pwned`
    torch_convert.py back --layout vera --pt DIR/back.pt ...: into VERA's JEM(Wide_ResNet) and, with
        --g-feats F, VERAGenerator(ResNetGenerator(F), 128), both strict; writes logits, energy and
        mean_batch, mean_eval, logsigma, post_logsigma for DIR/gen_inputs.safetensors
    torch_convert.py back --pt DIR/back.pt --depth 10 --widen 1 --classes 10 --out DIR/back.safetensors
        loads the .pt into CCF with load_state_dict(strict=True) and writes logits, energy and
        replay_buffer for DIR/inputs.safetensors

Pixels are the CIFAR bytes mapped as jemc's reader does, v / 255 * 2 - 1 in double, then
float32, so both sides see identical inputs. Everything is evaluated in float64 (the
weights are float32 values) to be the exact reference.
"""

import argparse
import copy
import os
import sys

import torch
import torch.nn.functional as F_

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import jem_official  # noqa: E402
import vera_official  # noqa: E402
import st_io  # noqa: E402


def pixels_to_x(u8):
    return (u8.to(torch.float64) / 255.0 * 2.0 - 1.0).to(torch.float32)


def eval64(model, x):
    m64 = model.to(torch.float64)
    with torch.no_grad():
        logits = m64.classify(x.to(torch.float64))
    model.to(torch.float32)
    return logits


def make(a):
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    model = jem_official.CCF(a.depth, a.widen, norm=None, n_classes=a.classes)
    model.eval()
    buf = torch.rand(a.buffer, 3, 32, 32) * 2 - 1
    sd = model.state_dict()
    torch.save({"model_state_dict": sd, "replay_buffer": buf}, os.path.join(a.out, "official.pt"))
    jempp = {k: v for k, v in sd.items() if not k.startswith("f.linear.")}     # JEM++'s layout
    torch.save({"model_state_dict": jempp, "replay_buffer": buf}, os.path.join(a.out, "official_jempp.pt"))
    dp = {"module." + k: v for k, v in sd.items()}
    torch.save({"model_state_dict": dp, "replay_buffer": buf}, os.path.join(a.out, "official_dp.pt"))

    u8 = torch.randint(0, 256, (a.records, 3, 32, 32), dtype=torch.uint8)
    x_all = pixels_to_x(u8)
    logits = eval64(model, x_all)
    top2 = logits.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]).min().item()
    pred = logits.argmax(1)
    half = a.records // 2
    y = torch.cat([pred[:half], (pred[half:] + 1) % a.classes])
    with open(os.path.join(a.out, "test.bin"), "wb") as f:
        for i in range(a.records):
            f.write(bytes([int(y[i])]) + u8[i].numpy().tobytes())
    acc = (pred == y).to(torch.float64).mean()
    loss = F_.cross_entropy(logits, y)
    energy = (-logits.logsumexp(1)).mean()
    st_io.write(os.path.join(a.out, "expected_eval.safetensors"),
                [("accuracy", acc.reshape(1)), ("loss", loss.reshape(1)), ("energy", energy.reshape(1)),
                 ("margin", torch.tensor([margin], dtype=torch.float64))])
    x = x_all[:a.batch]
    st_io.write(os.path.join(a.out, "inputs.safetensors"), [("x", x)])
    lg = logits[:a.batch]
    st_io.write(os.path.join(a.out, "expected.safetensors"),
                [("logits", lg), ("energy", -lg.logsumexp(1)), ("replay_buffer", buf)])

    # inputs the converter must refuse, each naming the key
    bad = dict(sd)
    del bad["f.layer2.0.conv2.bias"]
    torch.save({"model_state_dict": bad, "replay_buffer": buf}, os.path.join(a.out, "bad_missing.pt"))
    bad = dict(sd)
    bad["f.layer1.0.conv2.weight"] = torch.zeros(16 * a.widen, 16 * a.widen, 5, 5)
    torch.save({"model_state_dict": bad, "replay_buffer": buf}, os.path.join(a.out, "bad_shape.pt"))
    bad = dict(sd)
    bad["f.layer3.0.extra.weight"] = torch.zeros(1)
    torch.save({"model_state_dict": bad, "replay_buffer": buf}, os.path.join(a.out, "bad_key.pt"))
    with open(os.path.join(a.out, "not_a_pt.pt"), "w") as f:
        f.write("this is not a checkpoint\n")
    make_vera(a, x)
    print("margin %.3g (smallest gap between the two largest logits)" % margin)


def vera_ckpt(a, norm=None):
    """What VERA's train.py save_ckpt writes (a few iterations in, no eval yet: empty lists)."""
    logp_net = vera_official.JEM(vera_official.Wide_ResNet(a.depth, a.widen, num_classes=a.classes, norm=norm,
                                                           dropout_rate=0.3))
    g = vera_official.VERAGenerator(vera_official.ResNetGenerator(False, feats=16), 128, post_lr=3e-5)
    e_opt = torch.optim.Adam(logp_net.parameters(), lr=3e-5, betas=(0.0, 0.9))
    g_opt = torch.optim.Adam(list(g.parameters()), lr=6e-5, betas=(0.0, 0.9))
    sched = {"milestones": [150 * 1250, 175 * 1250], "gamma": 0.3}
    e_sch = torch.optim.lr_scheduler.MultiStepLR(e_opt, **sched)
    g_sch = torch.optim.lr_scheduler.MultiStepLR(g_opt, **sched)
    x = torch.rand(2, 3, 32, 32) * 2 - 1          # one optimiser step, so the Adam states hold tensors
    (logp_net(x).sum() + g.g(torch.randn(2, 128)).sum()).backward()
    e_opt.step()
    g_opt.step()
    e_sch.step()
    g_sch.step()
    e_opt.zero_grad()
    g_opt.zero_grad()
    with torch.no_grad():       # batch norms, sigma and the posterior width away from their initial values
        for m in g.g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
        g.logsigma.fill_(-2.5)
        g.post_logsigma.add_(0.1 * torch.randn(128))
    logp_net.eval()
    return logp_net, g, {
        "epoch": 0, "train_accs": [], "test_accs": [], "aucs": [], "briers": [], "test_lps": [],
        "modes": [], "kl": [], "eval_itrs": [], "itr": 10,
        "model": {"logp_net": logp_net.state_dict(), "g": g.state_dict()},
        "optimizer": {"e": e_opt.state_dict(), "g": g_opt.state_dict()},
        "scheduler": {"e": e_sch.state_dict(), "g": g_sch.state_dict()}}


def gen_outputs(g, h):
    """G(h) in float64 with batch statistics (a copy in train(): the file's running statistics
    stay) and with running statistics (eval()); logsigma, post_logsigma."""
    g64 = copy.deepcopy(g.g).to(torch.float64)
    with torch.no_grad():
        g64.eval()
        me = g64(h.to(torch.float64))
        g64.train()                 # after eval(): this forward updates the copy's running statistics
        mb = g64(h.to(torch.float64))
    return [("mean_batch", mb), ("mean_eval", me), ("logsigma", g.logsigma.detach().reshape([]).clone()),
            ("post_logsigma", g.post_logsigma.detach().clone())]


def make_vera(a, x):
    torch.manual_seed(a.seed + 1)
    model, g, ck = vera_ckpt(a)
    torch.save(ck, os.path.join(a.out, "vera.pt"))
    logits = eval64(model, x)
    h = torch.randn(a.batch, 128)
    st_io.write(os.path.join(a.out, "gen_inputs.safetensors"), [("h", h)])
    st_io.write(os.path.join(a.out, "expected_vera.safetensors"),
                [("logits", logits), ("energy", -logits.logsumexp(1))] + gen_outputs(g, h))
    _, _, bn = vera_ckpt(a, norm="batch")
    torch.save(bn, os.path.join(a.out, "bad_vera_norm.pt"))
    bad = dict(ck)
    bad["model"] = {"g": ck["model"]["g"]}
    torch.save(bad, os.path.join(a.out, "bad_vera_nologp.pt"))
    bad = dict(ck)
    lp = dict(ck["model"]["logp_net"])
    lp["logp_net.output_linear.weight"] = torch.zeros(a.classes, 128)    # a ResNetDiscriminator's head
    bad["model"] = {"logp_net": lp, "g": ck["model"]["g"]}
    torch.save(bad, os.path.join(a.out, "bad_vera_key.pt"))
    bad = dict(ck)
    gm = dict(ck["model"]["g"])
    del gm["g.output_bn.running_var"]
    bad["model"] = {"logp_net": ck["model"]["logp_net"], "g": gm}
    torch.save(bad, os.path.join(a.out, "bad_vera_gmissing.pt"))
    bad = dict(ck)
    bad["hook"] = _RunsCode("touch %s" % os.path.join(a.out, "pwned"))
    torch.save(bad, os.path.join(a.out, "bad_vera_code.pt"))


class _RunsCode:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def back(a):
    if a.layout == "vera":
        model = vera_official.JEM(vera_official.Wide_ResNet(a.depth, a.widen, num_classes=a.classes, norm=None))
        obj = torch.load(a.pt, map_location="cpu")
        model.load_state_dict(obj["model"]["logp_net"], strict=True)
        model.eval()
        x = st_io.read(os.path.join(os.path.dirname(a.out), "inputs.safetensors"))[0]["x"]
        logits = eval64(model, x)
        gen = []
        if a.g_feats:           # eval.py: logp_net.load_state_dict(...), g.load_state_dict(...), both strict
            g = vera_official.VERAGenerator(vera_official.ResNetGenerator(False, feats=a.g_feats), 128)
            g.load_state_dict(obj["model"]["g"], strict=True)
            h = st_io.read(os.path.join(os.path.dirname(a.out), "gen_inputs.safetensors"))[0]["h"]
            gen = gen_outputs(g, h)
        st_io.write(a.out, [("logits", logits), ("energy", -logits.logsumexp(1))] + gen)
        return
    cls = jem_official.CCF_JEMPP if a.layout == "jempp" else jem_official.CCF
    model = cls(a.depth, a.widen, norm=None, n_classes=a.classes)
    obj = torch.load(a.pt, map_location="cpu")
    model.load_state_dict(obj["model_state_dict"], strict=True)
    model.eval()
    x = st_io.read(os.path.join(os.path.dirname(a.out), "inputs.safetensors"))[0]["x"]
    logits = eval64(model, x)
    st_io.write(a.out, [("logits", logits), ("energy", -logits.logsumexp(1)), ("replay_buffer", obj["replay_buffer"])])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=["make", "back"])
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--widen", type=int, default=1)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--buffer", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--records", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pt")
    ap.add_argument("--g-feats", type=int, default=0)
    ap.add_argument("--layout", choices=["jem", "jempp", "vera"], default="jem")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    (make if a.cmd == "make" else back)(a)


if __name__ == "__main__":
    main()
