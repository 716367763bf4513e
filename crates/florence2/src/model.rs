//! The three sub-models wired together (transformers' `Florence2ForConditionalGeneration`):
//! pixels -> DaViT -> projector -> image tokens; [image tokens][<s> prompt </s>] -> BART encoder.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::bart::Bart;
use super::config::Config;
use super::projector::Projector;
use super::vision::VisionTower;

#[derive(Debug, Clone)]
pub struct Florence2Model {
    pub vision: VisionTower,
    pub projector: Projector,
    pub bart: Bart,
}

impl Florence2Model {
    /// `vb` is rooted at the checkpoint in the NATIVE layout (the loader renames remote keys).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let vision = VisionTower::new(&cfg.vision, vb.pp("model.vision_tower"))?;
        let projector = Projector::new(&cfg.vision, vb.pp("model.multi_modal_projector"))?;
        let final_logits_bias = if vb.contains_tensor("final_logits_bias") {
            Some(
                vb.get((1, cfg.text.vocab_size), "final_logits_bias")?
                    .reshape(cfg.text.vocab_size)?,
            )
        } else {
            None
        };
        let bart = Bart::new(&cfg.text, vb.pp("model.language_model"), final_logits_bias)?;
        Ok(Self {
            vision,
            projector,
            bart,
        })
    }

    /// Pixels (B, 3, H, W) -> image tokens (B, 1 + h·w, D).
    pub fn encode_image(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let pixel_values = pixel_values.to_dtype(self.bart.dtype())?;
        let features = self.vision.forward(&pixel_values)?;
        self.projector.forward(&features)
    }

    /// Image tokens (B, N, D) and prompt ids (B, L) (with `<s>` and `</s>`) -> encoder states
    /// (B, N + L, D).
    pub fn encode(&self, image_tokens: &Tensor, prompt_ids: &Tensor) -> Result<Tensor> {
        let text = self.bart.embed_tokens(prompt_ids)?;
        let embeds = Tensor::cat(&[image_tokens, &text], 1)?;
        self.bart.encoder.forward(&embeds)
    }
}
