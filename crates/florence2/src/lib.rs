//! Florence-2 on candle: the vision tower (DaViT), the projector, BART, the processor, generation and
//! the reference-exact post-processing. Mirrors transformers' `Florence2ForConditionalGeneration`.

pub mod bart;
pub mod config;
pub mod cpu_attention;
pub mod cpu_conv;
pub mod cpu_linear;
pub mod dwconv;
pub mod generate;
pub mod hub;
pub mod kernels;
pub mod load;
pub mod model;
pub mod nn;
pub mod postprocess;
pub mod processor;
pub mod projector;
mod runner;
pub mod tasks;
pub mod tokenizer;
pub mod vision;

pub use config::Config;
pub use generate::{Generated, GenerationConfig};
pub use model::Florence2Model;
pub use runner::{DeviceChoice, DtypeChoice, Error, Florence2, Output, Timings};
pub use tasks::Task;
