//! The one-call face of the model: load a checkpoint folder, then turn images + a task into the
//! token ids, decoded text, reference-exact parsed result and cleaned caption.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;

use super::config::Config;
use super::generate::{generate, GenerationConfig};
use super::load::{load_weights, LoadError, ModelFiles};
use super::model::Florence2Model;
use super::postprocess::post_process_generation;
use super::processor::{pixel_values, ImageProcessorConfig};
use super::tasks::Task;
use super::tokenizer::load_tokenizer;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: super::config::ConfigError,
    },
    #[error(transparent)]
    Tokenizer(#[from] super::tokenizer::TokenizerError),
    #[error("{path}: {message}")]
    Processor { path: PathBuf, message: String },
    #[error(transparent)]
    Generation(#[from] super::generate::GenerationConfigError),
    #[error("the weights in {dir} do not fit the model described by its config.json: {source}")]
    Weights {
        dir: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    #[error("cannot tokenize the prompt {prompt:?}: {message}")]
    Prompt { prompt: String, message: String },
    #[error(transparent)]
    Task(#[from] super::tasks::TaskError),
    #[error("{device} is not available: {message}")]
    Device { device: String, message: String },
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Where to run: `auto` prefers CUDA, then Metal, then the CPU, among what was compiled in.
/// (With the `clap` feature, also a command-line value: `auto`, `cpu`, `cuda`, `metal`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
    Metal,
}

/// The precision to run in; `auto` picks by device ([`DtypeChoice::dtype`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DtypeChoice {
    Auto,
    F32,
    F16,
    Bf16,
}

impl DeviceChoice {
    pub fn device(self) -> Result<Device, Error> {
        let unavailable = |name: &str, e: candle_core::Error| Error::Device {
            device: name.to_string(),
            message: e.to_string(),
        };
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda => Device::new_cuda(0).map_err(|e| unavailable("cuda", e)),
            DeviceChoice::Metal => Device::new_metal(0).map_err(|e| unavailable("metal", e)),
            DeviceChoice::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                if candle_core::utils::metal_is_available() {
                    if let Ok(d) = Device::new_metal(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

impl DtypeChoice {
    /// `auto`: f32 on the CPU (half types are emulated there and slower), f16 on GPUs.
    pub fn dtype(self, device: &Device) -> DType {
        match self {
            DtypeChoice::F32 => DType::F32,
            DtypeChoice::F16 => DType::F16,
            DtypeChoice::Bf16 => DType::BF16,
            DtypeChoice::Auto if device.is_cpu() => DType::F32,
            DtypeChoice::Auto => DType::F16,
        }
    }
}

/// Wall time of each stage of one `run` call (for the whole batch).
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub preprocess: Duration,
    pub vision: Duration,
    pub encoder: Duration,
    pub decode: Duration,
}

/// What one image gave for one task.
#[derive(Debug, Clone)]
pub struct Output {
    /// As `generate()` returns them: decoder start token first.
    pub token_ids: Vec<u32>,
    /// Decoded with special tokens kept, as `batch_decode(skip_special_tokens=False)`.
    pub text: String,
    /// Exactly what transformers' `post_process_generation` returns for the task.
    pub result: serde_json::Value,
    /// Beam search score (`sequences_scores`), if beams were used.
    pub score: Option<f32>,
}

pub struct Florence2 {
    pub model: Florence2Model,
    pub config: Config,
    pub generation: GenerationConfig,
    pub image_config: ImageProcessorConfig,
    tokenizer: tokenizers::Tokenizer,
    device: Device,
    dtype: DType,
}

impl Florence2 {
    pub fn load(files: &ModelFiles, device: &Device, dtype: DType) -> Result<Self, Error> {
        let _span = tracing::info_span!("load-model", dir = %files.dir.display()).entered();
        let raw = std::fs::read_to_string(&files.config).map_err(|e| Error::Processor {
            path: files.config.clone(),
            message: e.to_string(),
        })?;
        let config = Config::from_json(&raw).map_err(|source| Error::Config {
            path: files.config.clone(),
            source,
        })?;
        let generation = GenerationConfig::load(&config.text, files.generation_config.as_deref())?;
        let image_config =
            ImageProcessorConfig::from_file(&files.preprocessor_config).map_err(|e| {
                Error::Processor {
                    path: files.preprocessor_config.clone(),
                    message: e.to_string(),
                }
            })?;
        let tokenizer = load_tokenizer(&files.tokenizer, &config)?;
        let weights = load_weights(files, device)?;
        let vb = VarBuilder::from_tensors(weights, dtype, device);
        let model = Florence2Model::new(&config, vb).map_err(|source| Error::Weights {
            dir: files.dir.clone(),
            source,
        })?;
        Ok(Self {
            model,
            config,
            generation,
            image_config,
            tokenizer,
            device: device.clone(),
            dtype,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `<s> prompt </s>` ids for a task, as the processor builds them.
    pub fn prompt_ids(&self, task: Task, text_input: Option<&str>) -> Result<Vec<u32>, Error> {
        let prompt = task.prompt(text_input)?;
        let encoding = self
            .tokenizer
            .encode(prompt.as_str(), true)
            .map_err(|e| Error::Prompt {
                prompt: prompt.clone(),
                message: e.to_string(),
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The tokenizer as the reference processor uses it (Florence tokens added where the
    /// checkpoint's file lacks them).
    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, Error> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| Error::Prompt {
                prompt: format!("{ids:?}"),
                message: e.to_string(),
            })
    }

    /// Pixels for a batch of RGB images, resized and normalised as the reference processor does.
    pub fn pixel_values(&self, images: &[&RgbImage]) -> Result<Tensor, Error> {
        Ok(pixel_values(images, &self.image_config, &self.device)?)
    }

    /// Runs one task over a batch of images (one prompt for all) and returns one output per image.
    pub fn run(
        &self,
        images: &[&RgbImage],
        task: Task,
        text_input: Option<&str>,
        generation: &GenerationConfig,
        timings: &mut Timings,
    ) -> Result<Vec<Output>, Error> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let t0 = Instant::now();
        let prompt = self.prompt_ids(task, text_input)?;
        let pixels = self.pixel_values(images)?;
        let b = images.len();
        let prompt_ids = Tensor::new(prompt.as_slice(), &self.device)?
            .unsqueeze(0)?
            .repeat((b, 1))?;
        let t1 = Instant::now();
        let image_tokens = self.model.encode_image(&pixels)?;
        // Make the vision time real on asynchronous devices before reading the clock.
        self.device.synchronize()?;
        let t2 = Instant::now();
        let encoder_out = self.model.encode(&image_tokens, &prompt_ids)?;
        self.device.synchronize()?;
        let t3 = Instant::now();
        let generated = generate(&self.model.bart, &encoder_out, generation)?;
        let t4 = Instant::now();
        timings.preprocess += t1 - t0;
        timings.vision += t2 - t1;
        timings.encoder += t3 - t2;
        timings.decode += t4 - t3;
        generated
            .into_iter()
            .zip(images)
            .map(|(g, image)| {
                let text = self.decode(&g.token_ids)?;
                let result = post_process_generation(&text, task, (image.width(), image.height()));
                Ok(Output {
                    token_ids: g.token_ids,
                    text,
                    result,
                    score: g.score,
                })
            })
            .collect()
    }
}
