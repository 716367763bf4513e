//! Greedy and beam-search decoding that reproduce transformers' `generate()` for Florence-2,
//! token for token: the same logits processors in the same order (no-repeat-n-gram, min new
//! tokens, forced BOS, forced EOS), the same beam bookkeeping (top 2·beams candidates, finished
//! hypotheses scored by sum / generated_len^length_penalty, early stopping) and the same stopping.
//!
//! Scores are processed on the host in f32, as transformers casts logits to f32 before processing.

use std::path::Path;

use candle_core::{DType, Result, Tensor};
use serde::Deserialize;

use super::bart::{Bart, DecoderCache};
use super::config::TextConfig;

/// Decoding settings; defaults come from generation_config.json, then config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub num_beams: usize,
    pub max_new_tokens: usize,
    pub min_new_tokens: usize,
    pub no_repeat_ngram_size: usize,
    pub early_stopping: bool,
    pub length_penalty: f64,
    pub forced_bos_token_id: Option<u32>,
    pub forced_eos_token_id: Option<u32>,
    pub decoder_start_token_id: u32,
    pub eos_token_id: u32,
    pub pad_token_id: u32,
}

/// The keys of generation_config.json we honour (everything else is ignored, as sampling and
/// constrained decoding are not used for Florence-2).
#[derive(Debug, Default, Deserialize)]
struct GenerationConfigFile {
    num_beams: Option<usize>,
    max_new_tokens: Option<usize>,
    max_length: Option<usize>,
    min_new_tokens: Option<usize>,
    no_repeat_ngram_size: Option<usize>,
    early_stopping: Option<serde_json::Value>,
    length_penalty: Option<f64>,
    forced_bos_token_id: Option<u32>,
    forced_eos_token_id: Option<u32>,
    decoder_start_token_id: Option<u32>,
    eos_token_id: Option<serde_json::Value>,
    pad_token_id: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerationConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid generation config JSON: {source}")]
    Parse {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl GenerationConfig {
    /// transformers' fallbacks when neither file says: the values Florence-2 ships with.
    pub fn from_text_config(text: &TextConfig) -> Self {
        Self {
            num_beams: text.num_beams.unwrap_or(1),
            // transformers' default max_length is 20, and for an encoder-decoder it counts the
            // decoder start token.
            max_new_tokens: text.max_length.unwrap_or(20).saturating_sub(1),
            min_new_tokens: 0,
            no_repeat_ngram_size: text.no_repeat_ngram_size.unwrap_or(0),
            early_stopping: text.early_stopping.unwrap_or(false),
            length_penalty: text.length_penalty.unwrap_or(1.0),
            forced_bos_token_id: text.forced_bos_token_id,
            forced_eos_token_id: text.forced_eos_token_id,
            decoder_start_token_id: text.decoder_start_token_id,
            eos_token_id: text.eos_token_id,
            pad_token_id: text.pad_token_id,
        }
    }

    /// Reads generation_config.json over the config.json defaults, the way transformers does
    /// when generation_config.json exists (its values win).
    pub fn load(
        text: &TextConfig,
        path: Option<&Path>,
    ) -> std::result::Result<Self, GenerationConfigError> {
        let mut cfg = Self::from_text_config(text);
        let Some(path) = path else { return Ok(cfg) };
        let raw = std::fs::read_to_string(path).map_err(|source| GenerationConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: GenerationConfigFile =
            serde_json::from_str(&raw).map_err(|source| GenerationConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        if let Some(v) = file.num_beams {
            cfg.num_beams = v;
        }
        if let Some(v) = file.max_new_tokens {
            cfg.max_new_tokens = v;
        } else if let Some(v) = file.max_length {
            cfg.max_new_tokens = v.saturating_sub(1);
        }
        if let Some(v) = file.min_new_tokens {
            cfg.min_new_tokens = v;
        }
        if let Some(v) = file.no_repeat_ngram_size {
            cfg.no_repeat_ngram_size = v;
        }
        if let Some(v) = file.early_stopping {
            // "never" behaves like false for the heuristic we implement with length_penalty 1.0.
            cfg.early_stopping = v.as_bool().unwrap_or(false);
        }
        if let Some(v) = file.length_penalty {
            cfg.length_penalty = v;
        }
        if file.forced_bos_token_id.is_some() {
            cfg.forced_bos_token_id = file.forced_bos_token_id;
        }
        if file.forced_eos_token_id.is_some() {
            cfg.forced_eos_token_id = file.forced_eos_token_id;
        }
        if let Some(v) = file.decoder_start_token_id {
            cfg.decoder_start_token_id = v;
        }
        match file.eos_token_id {
            Some(serde_json::Value::Number(n)) => {
                if let Some(v) = n.as_u64() {
                    cfg.eos_token_id = v as u32;
                }
            }
            Some(serde_json::Value::Array(a)) => {
                if let Some(v) = a.first().and_then(|v| v.as_u64()) {
                    cfg.eos_token_id = v as u32;
                }
            }
            _ => {}
        }
        if let Some(v) = file.pad_token_id {
            cfg.pad_token_id = v;
        }
        Ok(cfg)
    }
}

/// One decoded sequence, starting with the decoder start token as `generate()` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub token_ids: Vec<u32>,
    /// Beam search only: transformers' `sequences_scores`.
    pub score: Option<f32>,
}

/// Applies the logits processors transformers builds from the generation config, in its order.
/// `seq` is the decoder sequence so far (start token included); `scores` one row of the vocab.
fn process_scores(cfg: &GenerationConfig, seq: &[u32], scores: &mut [f32]) {
    let cur_len = seq.len();
    let max_length = 1 + cfg.max_new_tokens;
    let n = cfg.no_repeat_ngram_size;
    if n > 0 && cur_len >= n {
        let prefix = &seq[cur_len + 1 - n..];
        for window in seq.windows(n) {
            if &window[..n - 1] == prefix {
                let banned = window[n - 1] as usize;
                if banned < scores.len() {
                    scores[banned] = f32::NEG_INFINITY;
                }
            }
        }
    }
    if cur_len - 1 < cfg.min_new_tokens {
        if let Some(s) = scores.get_mut(cfg.eos_token_id as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
    let force = |scores: &mut [f32], id: u32| {
        scores.iter_mut().for_each(|s| *s = f32::NEG_INFINITY);
        if let Some(s) = scores.get_mut(id as usize) {
            *s = 0.0;
        }
    };
    if let Some(bos) = cfg.forced_bos_token_id {
        if cur_len == 1 {
            force(scores, bos);
        }
    }
    if let Some(eos) = cfg.forced_eos_token_id {
        if cur_len == max_length - 1 {
            force(scores, eos);
        }
    }
}

fn log_softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    let log_sum = sum.ln();
    row.iter_mut().for_each(|x| *x = *x - max - log_sum);
}

/// Index of the first maximum, as `torch.argmax` returns it.
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

fn logits_rows(bart: &Bart, ids: &[u32], cache: &mut DecoderCache) -> Result<Vec<Vec<f32>>> {
    let input = Tensor::from_vec(ids.to_vec(), (ids.len(), 1), bart.device())?;
    bart.decode_step(&input, cache)?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()
}

/// Decodes every row of `encoder_out` (B, L, D): greedy when `num_beams == 1`, else beam search.
pub fn generate(
    bart: &Bart,
    encoder_out: &Tensor,
    cfg: &GenerationConfig,
) -> Result<Vec<Generated>> {
    let _span = tracing::debug_span!("decode", beams = cfg.num_beams).entered();
    if cfg.max_new_tokens == 0 {
        let b = encoder_out.dim(0)?;
        return Ok(vec![
            Generated {
                token_ids: vec![cfg.decoder_start_token_id],
                score: None,
            };
            b
        ]);
    }
    if cfg.num_beams <= 1 {
        greedy(bart, encoder_out, cfg)
    } else {
        beam_search(bart, encoder_out, cfg)
    }
}

fn greedy(bart: &Bart, encoder_out: &Tensor, cfg: &GenerationConfig) -> Result<Vec<Generated>> {
    let b = encoder_out.dim(0)?;
    let max_length = 1 + cfg.max_new_tokens;
    let mut cache = bart.new_cache(encoder_out)?;
    let mut seqs: Vec<Vec<u32>> = vec![vec![cfg.decoder_start_token_id]; b];
    let mut done = vec![false; b];
    while seqs[0].len() < max_length && done.iter().any(|d| !d) {
        let last: Vec<u32> = seqs.iter().map(|s| *s.last().expect("non-empty")).collect();
        let rows = logits_rows(bart, &last, &mut cache)?;
        for (i, mut row) in rows.into_iter().enumerate() {
            if done[i] {
                // transformers keeps feeding finished rows and pads them; we only need the row's
                // place in the batch.
                seqs[i].push(cfg.pad_token_id);
                continue;
            }
            process_scores(cfg, &seqs[i], &mut row);
            let token = argmax(&row);
            seqs[i].push(token);
            done[i] = token == cfg.eos_token_id;
        }
    }
    Ok(seqs
        .into_iter()
        .map(|mut s| {
            trim_padding(&mut s, cfg);
            Generated {
                token_ids: s,
                score: None,
            }
        })
        .collect())
}

/// Drops the padding a finished row collected while the rest of the batch went on.
fn trim_padding(seq: &mut Vec<u32>, cfg: &GenerationConfig) {
    if let Some(pos) = seq.iter().skip(1).position(|&t| t == cfg.eos_token_id) {
        seq.truncate(pos + 2);
    }
}

#[derive(Debug, Clone)]
struct Hypothesis {
    seq: Vec<u32>,
    score: f32,
    finished: bool,
}

/// Sorts candidate (value, index) pairs best first; ties keep the lower index first.
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    let k = k.min(values.len());
    order.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
        values[b].total_cmp(&values[a]).then(a.cmp(&b))
    });
    order.truncate(k);
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order
}

fn beam_search(
    bart: &Bart,
    encoder_out: &Tensor,
    cfg: &GenerationConfig,
) -> Result<Vec<Generated>> {
    let batch = encoder_out.dim(0)?;
    let nb = cfg.num_beams;
    let keep = 2 * nb;
    let max_length = 1 + cfg.max_new_tokens;
    let lp = cfg.length_penalty as f32;
    let device = bart.device().clone();

    let mut cache = bart.new_cache(encoder_out)?;
    let expand: Vec<u32> = (0..batch as u32)
        .flat_map(|b| std::iter::repeat_n(b, nb))
        .collect();
    cache.select(&Tensor::from_vec(expand, batch * nb, &device)?)?;

    let start = Hypothesis {
        seq: vec![cfg.decoder_start_token_id],
        score: 0.0,
        finished: false,
    };
    let mut running: Vec<Vec<Hypothesis>> = (0..batch)
        .map(|_| {
            (0..nb)
                .map(|j| Hypothesis {
                    score: if j == 0 { 0.0 } else { -1e9 },
                    ..start.clone()
                })
                .collect()
        })
        .collect();
    let mut finished: Vec<Vec<Hypothesis>> = (0..batch)
        .map(|_| {
            vec![
                Hypothesis {
                    seq: Vec::new(),
                    score: -1e9,
                    finished: false,
                };
                nb
            ]
        })
        .collect();
    let mut improvable = vec![true; batch];
    let mut cur_len = 1;

    loop {
        let last: Vec<u32> = running
            .iter()
            .flat_map(|beams| beams.iter().map(|h| *h.seq.last().expect("non-empty")))
            .collect();
        let rows = logits_rows(bart, &last, &mut cache)?;
        let vocab = rows[0].len();
        let mut all_hit = true;
        let mut reorder: Vec<u32> = Vec::with_capacity(batch * nb);
        for b in 0..batch {
            // Accumulated log-probs over (beam, token), as one flat row per image.
            let mut acc = Vec::with_capacity(nb * vocab);
            for (j, hyp) in running[b].iter().enumerate() {
                let mut row = rows[b * nb + j].clone();
                log_softmax_in_place(&mut row);
                process_scores(cfg, &hyp.seq, &mut row);
                acc.extend(row.into_iter().map(|v| v + hyp.score));
            }
            let top = top_k(&acc, keep);
            let candidates: Vec<(usize, u32, f32, bool)> = top
                .iter()
                .map(|&idx| {
                    let beam = idx / vocab;
                    let token = (idx % vocab) as u32;
                    let hit = token == cfg.eos_token_id || cur_len + 1 >= max_length;
                    (beam, token, acc[idx], hit)
                })
                .collect();
            all_hit &= candidates.iter().all(|c| c.3);

            // Next running beams: best `nb` candidates that did not stop.
            let penalised: Vec<f32> = candidates
                .iter()
                .map(|&(_, _, v, hit)| if hit { v + -1e9 } else { v })
                .collect();
            let next: Vec<Hypothesis> = top_k(&penalised, nb)
                .into_iter()
                .map(|c| {
                    let (beam, token, _, _) = candidates[c];
                    let mut seq = running[b][beam].seq.clone();
                    seq.push(token);
                    reorder.push((b * nb + beam) as u32);
                    Hypothesis {
                        seq,
                        score: penalised[c],
                        finished: false,
                    }
                })
                .collect();

            // Finished hypotheses: merge the top-`nb` candidates that stopped, best `nb` win.
            let full = finished[b].iter().all(|h| h.finished) && cfg.early_stopping;
            let generated_len = (cur_len + 1 - 1) as f32;
            let mut merged = finished[b].clone();
            for (rank, &(beam, token, v, hit)) in candidates.iter().enumerate() {
                let just_finished = hit && rank < nb;
                let mut score = v / generated_len.powf(lp);
                if full {
                    score += -1e9;
                }
                if !improvable[b] {
                    score += -1e9;
                }
                if !just_finished {
                    score += -1e9;
                }
                let mut seq = running[b][beam].seq.clone();
                seq.push(token);
                merged.push(Hypothesis {
                    seq,
                    score,
                    finished: just_finished,
                });
            }
            let scores: Vec<f32> = merged.iter().map(|h| h.score).collect();
            finished[b] = top_k(&scores, nb)
                .into_iter()
                .map(|i| merged[i].clone())
                .collect();
            running[b] = next;
        }
        cache.reorder_self(&Tensor::from_vec(reorder, batch * nb, &device)?)?;
        cur_len += 1;

        // Early-stop heuristic (early_stopping = true or false; "never" is not used by Florence-2).
        for b in 0..batch {
            let best_len = (cur_len - 1) as f32;
            let best_possible = running[b][0].score / best_len.powf(lp);
            let min_finished = finished[b]
                .iter()
                .map(|h| h.score)
                .fold(f32::INFINITY, f32::min);
            let beats_some = finished[b].iter().any(|h| {
                let worst = if h.finished { min_finished } else { -1e9 };
                best_possible > worst
            });
            improvable[b] &= beats_some;
        }
        let any_improvable = improvable.iter().any(|&x| x);
        let all_full = finished.iter().all(|f| f.iter().all(|h| h.finished)) && cfg.early_stopping;
        if !any_improvable || all_full || all_hit {
            break;
        }
    }

    Ok(finished
        .into_iter()
        .map(|slots| {
            let best = &slots[0];
            Generated {
                token_ids: best.seq.clone(),
                score: Some(best.score),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GenerationConfig {
        GenerationConfig {
            num_beams: 3,
            max_new_tokens: 10,
            min_new_tokens: 0,
            no_repeat_ngram_size: 3,
            early_stopping: true,
            length_penalty: 1.0,
            forced_bos_token_id: Some(0),
            forced_eos_token_id: Some(2),
            decoder_start_token_id: 2,
            eos_token_id: 2,
            pad_token_id: 1,
        }
    }

    #[test]
    fn no_repeat_ngram_bans_the_token_that_would_repeat() {
        let mut scores = vec![0.0; 10];
        // …5 6 7 … 5 6 -> 7 would repeat "5 6 7".
        process_scores(&cfg(), &[2, 0, 5, 6, 7, 5, 6], &mut scores);
        assert_eq!(scores[7], f32::NEG_INFINITY);
        assert!(scores.iter().enumerate().all(|(i, &s)| i == 7 || s == 0.0));
    }

    #[test]
    fn forced_bos_then_forced_eos_at_the_last_step() {
        let mut scores = vec![0.5; 10];
        process_scores(&cfg(), &[2], &mut scores);
        assert_eq!(argmax(&scores), 0);
        assert_eq!(scores[3], f32::NEG_INFINITY);
        let mut scores = vec![0.5; 10];
        let seq: Vec<u32> = (0..10).map(|i| i + 3).collect();
        process_scores(&cfg(), &seq, &mut scores);
        assert_eq!(argmax(&scores), 2);
    }

    #[test]
    fn min_new_tokens_blocks_eos() {
        let mut c = cfg();
        c.min_new_tokens = 3;
        let mut scores = vec![0.0; 10];
        process_scores(&c, &[2, 0, 5], &mut scores);
        assert_eq!(scores[2], f32::NEG_INFINITY);
        let mut scores = vec![0.0; 10];
        process_scores(&c, &[2, 0, 5, 6], &mut scores);
        assert_eq!(scores[2], 0.0);
    }

    #[test]
    fn top_k_is_sorted_and_stable() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, -1.0, 2.0], 3), vec![1, 2, 4]);
        assert_eq!(
            top_k(&[f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY], 2),
            vec![1, 0]
        );
    }

    #[test]
    fn log_softmax_normalises() {
        let mut row = vec![1.0, 2.0, 3.0];
        log_softmax_in_place(&mut row);
        let total: f32 = row.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
