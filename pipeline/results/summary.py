"""The end-of-run Markdown summary of one result document: a table per suite, with ratios."""
from __future__ import annotations

from pipeline.results.format import value_of
from pipeline.results.markdown import number, percent, ratio, spread, table


def _generate(rows) -> list[str]:
    out = ["**generate** (cluster start-up excluded; MB/s = uint8 frame bytes; run s = fixed cost of one run)", ""]
    body = []
    for size in sorted({r["size"] for r in rows if r["suite"] == "generate"}):
        book = value_of(rows, suite="generate", impl="book", size=size, metric="samples_per_s")
        cells = sorted({(r["impl"] != "book", r["impl"], r["workers"]) for r in rows
                        if r["suite"] == "generate" and r["size"] == size})
        for _, impl, workers in cells:
            m = dict(suite="generate", impl=impl, size=size, workers=workers)
            rate = value_of(rows, metric="samples_per_s", **m)
            one = value_of(rows, metric="samples_per_s", **{**m, "workers": 1})
            body.append([size, impl, workers, number(rate), number(value_of(rows, metric="mb_per_s", **m)),
                         number(value_of(rows, metric="per_worker_samples_per_s", **m)),
                         number(value_of(rows, metric="cluster_startup_s", **m)),
                         number(value_of(rows, metric="run_overhead_s", **m)), ratio(rate, book),
                         ratio(rate, one) if impl == "ours" else "-"])
    out += table(["size", "impl", "workers", "samples/s", "MB/s", "per worker", "start-up s", "run s", "vs book",
                  "vs 1 worker"], body, "rlrrrrrrrr")
    return out + [""]


def _load(rows) -> list[str]:
    load = [r for r in rows if r["suite"] == "load" and r["metric"] == "samples_per_s"]
    out = ["**load** (samples/s over whole epochs after a warm-up epoch, median [p10-p90]; consumer: a Python "
           "loop, or a tf.function as `fit` pulls batches, the figure training gets; from_generator reads the same "
           "sequences through h5py, stored in its fastest codec; vs in-memory: against the shuffled in-memory "
           "pipeline pulled by the same consumer; vs unshuffled: the same pipeline unshuffled; RSS: process and "
           "children)", ""]
    body = []
    order = {"ours-packed": 0, "ours": 1, "ours-graph-packed": 2, "in-memory": 3, "from_generator": 4}
    for r in sorted(load, key=lambda r: (r["size"], r["batch_size"], r.get("consumer") != "tf.function",
                                         not r.get("shuffle", True), order.get(r["impl"], 9),
                                         -(r.get("readers") or 0))):
        m = dict(suite="load", impl=r["impl"], size=r["size"], batch_size=r["batch_size"], readers=r.get("readers"),
                 shuffle=r.get("shuffle"), consumer=r.get("consumer"))
        lead = [r["size"], r["batch_size"], r["impl"], r.get("consumer") or "-", _yes(r.get("shuffle")),
                r.get("mechanism") or "-", r.get("readers") or "-"]
        if r["error"]:
            body.append([*lead, f"failed: {r['error']}", "", "", "", "", ""])
            continue
        base = value_of(rows, suite="load", impl="in-memory", size=r["size"], batch_size=r["batch_size"], shuffle=True,
                        consumer=r.get("consumer"), metric="samples_per_s")
        twin = value_of(rows, **{**m, "shuffle": False}, metric="samples_per_s") if r.get("shuffle") else None
        body.append([*lead,
                     spread(r["value"], value_of(rows, **m, metric="samples_per_s_p10"),
                            value_of(rows, **m, metric="samples_per_s_p90")),
                     ratio(r["value"], base), ratio(r["value"], twin),
                     number(value_of(rows, **m, metric="first_batch_ms")),
                     number(value_of(rows, **m, metric="peak_rss_mb")),
                     number(value_of(rows, **m, metric="rss_growth_mb"))])
    out += table(["size", "batch", "impl", "consumer", "shuffled", "mechanism", "readers", "samples/s", "vs in-memory",
                  "vs unshuffled", "first batch ms", "peak RSS MB", "RSS growth MB"], body, "rrllllrrrrrrr")
    return out + [""]


def _yes(flag) -> str:
    return "-" if flag is None else "yes" if flag else "no"


FEED_COLUMNS = ("ours", "ours-packed", "in-memory", "synthetic", "synthetic-packed")


def _train(rows) -> list[str]:
    train = [r for r in rows if r["suite"] == "train"]
    out = ["**train** (ms/step median [p10-p90] over at least one epoch, warm-up excluded; input-bound = "
           "1 - synthetic / fed; vs book on the in-memory feed)", ""]
    body = []
    cells = sorted({(r["size"], r["batch_size"], r["impl"], r.get("precision") or "float32") for r in train
                    if r["metric"] == "ms_per_step_median"},
                   key=lambda c: (c[0], c[1], c[2] == "book-workflow", c[2], c[3]))
    for size, batch, model, precision in cells:
        m = dict(suite="train", impl=model, size=size, batch_size=batch, precision=precision)

        def step(feed):
            return spread(*(value_of(rows, feed=feed, metric=f"ms_per_step_{s}", **m)
                            for s in ("median", "p10", "p90")))

        bound = [percent(value_of(rows, feed=f, metric="input_bound_fraction", **m)) for f in ("ours", "ours-packed",
                                                                                              "in-memory")]
        mem = value_of(rows, feed="in-memory", metric="ms_per_step_median", **m)
        book = value_of(rows, suite="train", impl="book", feed="in-memory", size=size, batch_size=batch,
                        precision=precision, metric="ms_per_step_median")
        workflow = value_of(rows, suite="train", impl="book-workflow", feed="in-memory", size=size, batch_size=batch,
                            metric="ms_per_step_median")
        body.append([size, batch, model, precision, *(step(f) for f in FEED_COLUMNS), " / ".join(bound),
                     ratio(book, mem), ratio(workflow, mem)])
    out += table(["size", "batch", "model", "precision", "fed by our loader", "fed packed", "in memory", "synthetic",
                  "synthetic, packed", "input-bound (ours / packed / in-memory)", "vs book", "vs book-workflow"],
                 body, "rrllrrrrrrrr")
    fits = sorted({(r["size"], r["batch_size"], r["impl"], r.get("execution") or "K=1") for r in train
                   if r["metric"] == "fit_s_per_epoch"})
    if fits:
        out += ["", "`fit` wall time per epoch (epochs after the first; s, and ms per step), at one step per "
                "compiled call and at the K `--steps-per-execution auto` picks:", ""]
        body = []
        for size, batch, model, execution in fits:
            cell = [r for r in train if r["impl"] == model and r["size"] == size and r["batch_size"] == batch
                    and (r.get("execution") or "K=1") == execution]  # rows from before K read as K=1

            def fit(feed, metric, cell=cell):
                return value_of(cell, feed=feed, metric=metric)

            ours, mem = fit("ours", "fit_s_per_epoch"), fit("in-memory", "fit_s_per_epoch")
            k = next((r.get("steps_per_execution") for r in cell if r["metric"] == "fit_s_per_epoch"), None)
            bound = fit("ours", "fit_input_bound_fraction")
            body.append([size, batch, model, k or 1, number(ours), number(fit("ours", "fit_ms_per_step")),
                         number(mem), number(fit("in-memory", "fit_ms_per_step")), ratio(ours, mem),
                         number(fit("synthetic", "fit_ms_per_step")), "-" if bound is None else f"{bound:.1%}"])
        out += table(["size", "batch", "model", "K", "our loader s", "ms/step", "in-memory arrays s", "ms/step",
                      "loader / arrays", "one batch repeated, ms/step", "input-bound"], body, "rrlrrrrrrrr")
        calls = [r for r in train if r["metric"] == "call_ms" and not r["error"]]
        for r in calls:
            m = dict(suite="train", impl=r["impl"], size=r["size"], batch_size=r["batch_size"], feed="synthetic")
            out += ["", f"`auto` at size {r['size']}, batch {r['batch_size']}, {r['impl']}: a call costs "
                        f"{r['value']:.2f} ms beside {number(value_of(rows, metric='compiled_step_ms', **m))} ms a "
                        f"step on a repeated batch, so K = {r['steps_per_execution']}."]
    return out + _scaling(rows) + [""]


def _scaling(rows) -> list[str]:
    """The scaling rows: a line per size, batch, model, precision and device count."""
    rates = [r for r in rows if r["suite"] == "train" and r["metric"] == "scaling_samples_per_s"]
    if not rates:
        return []
    out = ["", "`fit` on our loader with a replica per device (the global batch split over them; samples/s "
           "median [p10-p90] over the timed epochs; efficiency = samples/s(N) / (N x samples/s(1))):", ""]
    body = []
    for r in sorted(rates, key=lambda r: (r["size"], r["batch_size"], r["impl"], r.get("precision") or "",
                                          r.get("processes") or 1, r.get("devices") or 1)):
        m = dict(suite="train", impl=r["impl"], size=r["size"], batch_size=r["batch_size"],
                 precision=r.get("precision"), devices=r.get("devices"), processes=r.get("processes"))
        lead = [r["size"], r["batch_size"], r["impl"], r.get("precision") or "-", r.get("devices"),
                r.get("processes"), r.get("batch_size_per_device") or "-"]
        if r["error"]:
            body.append([*lead, f"failed: {r['error']}", "-"])
            continue
        body.append([*lead, spread(r["value"], value_of(rows, metric="scaling_samples_per_s_p10", **m),
                                   value_of(rows, metric="scaling_samples_per_s_p90", **m)),
                     percent(value_of(rows, metric="scaling_efficiency", **m))])
    return out + table(["size", "batch", "model", "precision", "devices", "processes", "per device", "samples/s",
                        "efficiency"], body, "rrllrrrrr")


def _accuracy(rows) -> list[str]:
    out = ["**accuracy** (held-out, after one epoch over the train budget; median [min-max] over initial seeds)", ""]
    body = []
    for r in rows:
        if r["suite"] == "accuracy" and r["metric"] == "accuracy":
            m = dict(suite="accuracy", impl=r["impl"], size=r["size"], variant=r.get("variant"))
            low, high = value_of(rows, **m, metric="accuracy_min"), value_of(rows, **m, metric="accuracy_max")
            body.append([r["size"], r.get("variant"), r["impl"], len(r.get("seeds") or [0]), r.get("train_samples"),
                         r.get("test_samples"),
                         "failed" if r["error"] else f"{r['value']:.4f}" + (
                             f" [{low:.4f}-{high:.4f}]" if low is not None and high is not None else ""),
                         number(value_of(rows, **m, metric="loss"))])
    out += table(["size", "variant", "model", "seeds", "train samples", "test samples", "accuracy", "loss"], body,
                 "rllrrrrr")
    return out + [""]


def _failures(rows) -> list[str]:
    failed = [r for r in rows if r["error"]]
    if not failed:
        return []
    out, seen = [f"**{len(failed)} failed rows:**", ""], set()
    for r in failed:
        tag = (r["suite"], r["impl"], r["feed"], r["size"], r["batch_size"], r["workers"], r["error"])
        if tag not in seen:
            seen.add(tag)
            out.append(f"- {r['suite']}/{r['impl']}{'/' + r['feed'] if r['feed'] else ''} size={r['size']} "
                       f"batch={r['batch_size']} workers={r['workers']}: {r['error']}")
    return out + [""]


def _au(rows) -> list[str]:
    """AU per demand, ours against the synthetic consumer floor, and the fastest accelerator kept busy."""
    out = ["**au** (accelerator utilization of an emulated accelerator that sleeps a fixed step; demand: the "
           "step's samples/s over the loader's own; ours / synthetic, a loader that costs nothing; "
           "tf.function-K: K steps per call, K as `--steps-per-execution auto` picks it for each step)", ""]
    alone = [r for r in rows if r["suite"] == "au" and r["metric"] == "alone_samples_per_s" and not r["error"]]
    demands = sorted({r["demand"] for r in rows if r["suite"] == "au" and r["metric"] == "au" and r.get("demand")})
    body = []
    for r in sorted(alone, key=lambda r: (r["size"], r["batch_size"], r["front_end"], r.get("consumer") or "")):
        m = dict(suite="au", size=r["size"], batch_size=r["batch_size"], front_end=r["front_end"],
                 consumer=r.get("consumer"))

        def au(impl, demand, m=m):
            return value_of(rows, impl=impl, metric="au", demand=demand, **m)

        ks = sorted({x["steps_per_execution"] for x in rows if x["metric"] == "au" and x.get("steps_per_execution")
                     and all(x.get(k) == v for k, v in m.items())})
        consumer = (r.get("consumer") or "-") + (f" (K {ks[0]}-{ks[-1]})" if len(ks) > 1 else
                                                 f" (K {ks[0]})" if ks and ks[0] > 1 else "")
        body.append([r["size"], r["batch_size"], r["front_end"], consumer, number(r["value"]),
                     *(f"{percent(au('ours-packed', d))} / {percent(au('synthetic', d))}" for d in demands),
                     number(value_of(rows, impl="ours-packed", metric="au95_samples_per_s", **m))])
    out += table(["size", "batch", "front end", "consumer", "alone samples/s", *(f"AU at {d:g}" for d in demands),
                  "AU>=95% up to samples/s"], body, "rrllr" + "r" * (len(demands) + 1))
    return out + [""]


def markdown_summary(doc: dict) -> str:
    """The end-of-run tables of a result document, with ratios of ours over the baselines."""
    rows = doc["rows"]
    env = doc["environment"]
    backend = doc.get("config", {}).get("backend") or "tensorflow"
    version = env.get("versions", {}).get(backend)
    out = [f"### Bench {doc['created']} on {env['device']['name']}, {backend}{' ' + version if version else ''} "
           f"(preset {doc['config']['preset']}, commit {(env['git']['commit'] or '?')[:10]}"
           f"{' dirty' if env['git']['dirty'] else ''})", ""]
    suites = {r["suite"] for r in rows}
    for suite, section in (("generate", _generate), ("load", _load), ("au", _au), ("train", _train),
                           ("accuracy", _accuracy)):
        if suite in suites:
            out += section(rows)
    out += _failures(rows)
    return "\n".join(out)
