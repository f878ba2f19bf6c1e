//! `gqa train --recipe table`: results.json as the Markdown of
//! docs/MODEL_CARD.md: the quality table at short windows, the one at long
//! windows, and each shipped model's samples.

use std::path::Path;

use super::recipe::Results;
use super::trainer::read_json;
use crate::error::Result;

/// The tables and samples of `out`/results.json as Markdown.
pub fn markdown(out: &Path) -> Result<String> {
    let results: Results = read_json(&out.join("results.json"))?;
    let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("-".to_string(), f);
    let mut md = String::from(
        "| variant | G | method | alpha | uptrain steps | val nats/token | val nats/byte | perplexity \
         | KL vs MHA (nats/token) | top-1 agreement | decode tok/s @256 | decode tok/s @2048 |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for v in &results.variants {
        md += &format!(
            "| {} | {} | {} | {}% | {} | {:.4} | {:.4} | {:.2} | {} | {} | {:.0} | {:.0} |\n",
            v.label,
            v.n_kv_heads,
            v.method,
            v.alpha_pct,
            if v.method == "-" { "-".to_string() } else { v.train_steps.to_string() },
            v.eval.nats_per_token,
            v.nats_per_byte,
            v.eval.perplexity,
            opt(v.eval.kl_vs_base, &|x| format!("{x:.4}")),
            opt(v.eval.top1_agreement, &|x| format!("{:.1}%", 100.0 * x)),
            v.decode_tok_s_ctx256,
            v.decode_tok_s_ctx2048,
        );
    }
    md += &format!(
        "\nLong context ({}):\n\n\
         | variant | G | method | alpha | val nats/token | perplexity | KL vs MHA (nats/token) | top-1 agreement |\n\
         |---|---|---|---|---|---|---|---|\n",
        results.eval_long_text
    );
    for v in &results.variants {
        md += &format!(
            "| {} | {} | {} | {}% | {:.4} | {:.2} | {} | {} |\n",
            v.label,
            v.n_kv_heads,
            v.method,
            v.alpha_pct,
            v.eval_long.nats_per_token,
            v.eval_long.perplexity,
            opt(v.eval_long.kl_vs_base, &|x| format!("{x:.4}")),
            opt(v.eval_long.top1_agreement, &|x| format!("{:.1}%", 100.0 * x)),
        );
    }
    for s in &results.samples {
        md += &format!(
            "\n**{}**, greedy:\n\n> {}\n\nsampled ({}):\n\n> {}\n",
            s.model,
            s.greedy.replace('\n', " "),
            s.sampler,
            s.sampled.replace('\n', " ")
        );
    }
    Ok(md)
}
