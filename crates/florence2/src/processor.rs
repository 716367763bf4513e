//! Caption stage, image side: turns decoded RGB photos into the `pixel_values` tensor Florence-2
//! reads: resize (Pillow BICUBIC, aspect ratio ignored) → ×`rescale_factor` → (x − mean) / std,
//! channels first.
//!
//! Mirrors transformers' `CLIPImageProcessorPil` (the Pillow backend `Florence2Processor` uses for
//! images; checked against transformers 5.24 and Pillow 13.0). The torchvision backend of the same
//! class gives other numbers and is not the reference.
//!
//! The resampler is a re-implementation of Pillow's `ImagingResample` for 8-bit images: separable
//! convolution, filter support scaled by the down-sampling factor, weights normalised in f64 and
//! rounded to 22-bit fixed point, one pass per axis with an 8-bit intermediate (rounded and
//! clipped) in between, in the order Pillow 13 picks (usually horizontal first; vertical first when
//! the height shrinks much more than the width). Any general-purpose resizer (the `image` crate's
//! CatmullRom included) differs from it by up to ~24 levels, enough to move Florence-2's output tokens, so the
//! output here is bit-exact with `PIL.Image.resize(…, BICUBIC)` (tests compare checksums of Pillow
//! outputs committed under `tests/fixtures/processor/`).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::Deserialize;

/// Errors from reading `preprocessor_config.json`.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("cannot read image processor config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image processor config {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("image processor config {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A resampling filter of Pillow's, numbered as `PIL.Image.Resampling` (the `resample` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// 1: Lanczos, support 3.
    Lanczos,
    /// 2: triangle, support 1.
    Bilinear,
    /// 3: Keys cubic with a = −0.5, support 2. Florence-2's filter.
    Bicubic,
    /// 4: box, support 0.5.
    Box,
    /// 5: Hamming-windowed sinc, support 1.
    Hamming,
}

impl Filter {
    /// The filter for a `resample` number, `None` for NEAREST (0, a different code path in
    /// Pillow that we do not implement) and unknown values.
    pub fn from_pil(code: u32) -> Option<Filter> {
        Some(match code {
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => return None,
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    /// The filter kernel, written with Pillow's operation order so the f64 results are identical.
    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    // Pillow writes the window constants as C floats.
                    x.sin() / x * (0.54f32 as f64 + 0.46f32 as f64 * x.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// Fixed-point precision of the weights: 32 bits minus 8 for the pixel value and 2 for the
/// overshoot of filters with negative lobes.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per-output-pixel convolution weights along one axis.
struct Kernel {
    /// Weights stored per output pixel (only the first `len` of each row are used).
    ksize: usize,
    /// (first input pixel, number of input pixels) per output pixel.
    bounds: Vec<(usize, usize)>,
    /// Fixed-point weights, `ksize` per output pixel.
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` for the whole input range (box = (0, in_size)) followed by its
/// `normalize_coeffs_8bpc`.
fn kernel(in_size: u32, out_size: u32, filter: Filter) -> Kernel {
    // Pillow takes the box as C floats: (in1 - in0) is computed in f32 before widening.
    let scale = (in_size as f32) as f64 / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;

    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut weights = vec![0i32; out_size as usize * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size as usize {
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; negative values are clamped to 0 right after.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let len = (xmax - xmin).max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(len) {
            let w = filter.eval(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..xx * ksize + len];
        for (dst, &w) in row.iter_mut().zip(&k[..len]) {
            let w = if ww != 0.0 { w / ww } else { w };
            let scaled = w * (1i32 << PRECISION_BITS) as f64;
            *dst = if w < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        bounds.push((xmin as usize, len));
    }
    Kernel {
        ksize,
        bounds,
        weights,
    }
}

/// Pillow's `clip8`: drop the fraction bits, clamp to 0..=255.
#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like `PIL.Image.resize((width, height), Image.BICUBIC)` on an RGB image, bit for bit.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_pillow(img, width, height, Filter::Bicubic)
}

/// Resizes like `PIL.Image.resize((width, height), filter)` on an RGB image, bit for bit, for the
/// convolution filters. Same size in and out returns a copy, as Pillow does. Pillow refuses empty
/// sizes; here an empty input or output gives an all-black image of the requested size.
pub fn resize_pillow(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (in_w, in_h) = img.dimensions();
    if width == 0 || height == 0 || in_w == 0 || in_h == 0 {
        return RgbImage::new(width, height);
    }
    let need_horizontal = width != in_w;
    let need_vertical = height != in_h;
    let vertical = kernel(in_h, height, filter);
    let src = img.as_raw();
    let finish = |buf: Vec<u8>| RgbImage::from_raw(width, height, buf).expect("buffer sized");

    match (need_horizontal, need_vertical) {
        (false, false) => img.clone(),
        (false, true) => finish(vertical_pass(src, in_w as usize, 0, &vertical)),
        (true, false) => {
            let horizontal = kernel(in_w, width, filter);
            finish(horizontal_pass(
                src,
                in_w as usize,
                0..in_h as usize,
                &horizontal,
            ))
        }
        (true, true) => {
            let horizontal = kernel(in_w, width, filter);
            // Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height
            // loses more than twice as many pixels as the width; earlier versions always went
            // horizontal first. The 8-bit intermediate makes the order visible (up to ~20
            // levels), so we follow Pillow 13, the version the reference fixtures use.
            let vertical_first =
                height < in_h && (in_h as i64 - height as i64) > 2 * (in_w as i64 - width as i64);
            if vertical_first {
                let tmp = vertical_pass(src, in_w as usize, 0, &vertical);
                finish(horizontal_pass(
                    &tmp,
                    in_w as usize,
                    0..height as usize,
                    &horizontal,
                ))
            } else {
                // Only the input rows the vertical pass will read go through the horizontal one.
                let first_row = vertical.bounds[0].0;
                let (start, len) = vertical.bounds[height as usize - 1];
                let tmp = horizontal_pass(src, in_w as usize, first_row..start + len, &horizontal);
                finish(vertical_pass(&tmp, width as usize, first_row, &vertical))
            }
        }
    }
}

/// Horizontal pass over input rows `rows` into a `kernel.bounds.len()`-wide 8-bit image.
fn horizontal_pass(
    src: &[u8],
    src_w: usize,
    rows: std::ops::Range<usize>,
    kernel: &Kernel,
) -> Vec<u8> {
    let out_w = kernel.bounds.len();
    let mut out = Vec::with_capacity(rows.len() * out_w * 3);
    for y in rows {
        let line = &src[y * src_w * 3..(y + 1) * src_w * 3];
        for (xx, &(start, len)) in kernel.bounds.iter().enumerate() {
            let k = &kernel.weights[xx * kernel.ksize..xx * kernel.ksize + len];
            let px = &line[start * 3..(start + len) * 3];
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            for (p, &w) in px.chunks_exact(3).zip(k) {
                acc[0] += p[0] as i32 * w;
                acc[1] += p[1] as i32 * w;
                acc[2] += p[2] as i32 * w;
            }
            out.extend(acc.map(clip8));
        }
    }
    out
}

/// Vertical pass; `row_offset` is the input row that `src`'s first row corresponds to.
fn vertical_pass(src: &[u8], width: usize, row_offset: usize, kernel: &Kernel) -> Vec<u8> {
    let stride = width * 3;
    let mut out = Vec::with_capacity(kernel.bounds.len() * stride);
    let mut acc = vec![0i32; stride];
    for (yy, &(start, len)) in kernel.bounds.iter().enumerate() {
        let k = &kernel.weights[yy * kernel.ksize..yy * kernel.ksize + len];
        acc.fill(1 << (PRECISION_BITS - 1));
        for (y, &w) in k.iter().enumerate() {
            let row = start + y - row_offset;
            let line = &src[row * stride..(row + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(line) {
                *a += p as i32 * w;
            }
        }
        out.extend(acc.iter().map(|&a| clip8(a)));
    }
    out
}

/// Target size of the resize step, as `size` in `preprocessor_config.json` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSize")]
pub enum SizeSpec {
    /// `{"height": H, "width": W}`: exactly this size, aspect ratio ignored (Florence-2).
    Exact { height: u32, width: u32 },
    /// `{"shortest_edge": S}` (a bare integer means the same for CLIP processors), optionally
    /// with `"longest_edge"`: keep the aspect ratio.
    ShortestEdge {
        shortest_edge: u32,
        longest_edge: Option<u32>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Int(u32),
    Dict {
        height: Option<u32>,
        width: Option<u32>,
        shortest_edge: Option<u32>,
        longest_edge: Option<u32>,
    },
}

impl TryFrom<RawSize> for SizeSpec {
    type Error = String;

    /// Same precedence as transformers' `resize`: shortest/longest edge, shortest edge, then
    /// height and width.
    fn try_from(raw: RawSize) -> Result<Self, String> {
        match raw {
            RawSize::Int(s) => Ok(SizeSpec::ShortestEdge {
                shortest_edge: s,
                longest_edge: None,
            }),
            RawSize::Dict {
                shortest_edge: Some(s),
                longest_edge,
                ..
            } => Ok(SizeSpec::ShortestEdge {
                shortest_edge: s,
                longest_edge,
            }),
            RawSize::Dict {
                height: Some(height),
                width: Some(width),
                ..
            } => Ok(SizeSpec::Exact { height, width }),
            RawSize::Dict { .. } => {
                Err("size must have \"height\" and \"width\", or \"shortest_edge\"".to_string())
            }
        }
    }
}

impl SizeSpec {
    /// The (width, height) an image of `(w, h)` is resized to; transformers'
    /// `get_resize_output_image_size(default_to_square=False)` and `get_size_with_aspect_ratio`.
    pub fn output_size(&self, (w, h): (u32, u32)) -> (u32, u32) {
        match *self {
            SizeSpec::Exact { height, width } => (width, height),
            SizeSpec::ShortestEdge {
                shortest_edge,
                longest_edge: None,
            } => {
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                let new_short = shortest_edge;
                let new_long = (shortest_edge as f64 * long as f64 / short as f64) as u32;
                if w <= h {
                    (new_short, new_long)
                } else {
                    (new_long, new_short)
                }
            }
            SizeSpec::ShortestEdge {
                shortest_edge,
                longest_edge: Some(max_size),
            } => {
                let (min_o, max_o) = (w.min(h) as f64, w.max(h) as f64);
                let mut size = shortest_edge;
                let mut raw_size = None;
                if max_o / min_o * size as f64 > max_size as f64 {
                    let raw = max_size as f64 * min_o / max_o;
                    raw_size = Some(raw);
                    size = raw.round_ties_even() as u32;
                }
                let base = raw_size.unwrap_or(size as f64);
                if (h <= w && h == size) || (w <= h && w == size) {
                    (w, h)
                } else if w < h {
                    (size, (base * h as f64 / w as f64) as u32)
                } else {
                    ((base * w as f64 / h as f64) as u32, size)
                }
            }
        }
    }
}

/// `preprocessor_config.json`. Keys a file lacks take Florence-2's values (768×768, ImageNet
/// mean/std, 1/255, BICUBIC, no centre crop); keys we do not use are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageProcessorConfig {
    #[serde(default = "default_size")]
    pub size: SizeSpec,
    #[serde(default = "default_size")]
    pub crop_size: SizeSpec,
    #[serde(default = "yes")]
    pub do_resize: bool,
    #[serde(default)]
    pub do_center_crop: bool,
    #[serde(default = "yes")]
    pub do_rescale: bool,
    #[serde(default = "default_rescale_factor")]
    pub rescale_factor: f64,
    #[serde(default = "yes")]
    pub do_normalize: bool,
    #[serde(default = "default_mean", deserialize_with = "one_or_many")]
    pub image_mean: Vec<f64>,
    #[serde(default = "default_std", deserialize_with = "one_or_many")]
    pub image_std: Vec<f64>,
    /// Recorded for completeness: the caller hands in RGB images (captiond's `media::decode`
    /// converts as transformers 5.x does with this on). `null` in Florence-2's file.
    #[serde(default)]
    pub do_convert_rgb: Option<bool>,
    /// Pillow filter number; 3 = BICUBIC.
    #[serde(default = "default_resample")]
    pub resample: u32,
    /// Number of image tokens the processor inserts (577 for Florence-2), if the file says.
    #[serde(default)]
    pub image_seq_length: Option<usize>,
}

fn default_size() -> SizeSpec {
    SizeSpec::Exact {
        height: 768,
        width: 768,
    }
}
fn yes() -> bool {
    true
}
fn default_rescale_factor() -> f64 {
    1.0 / 255.0
}
fn default_mean() -> Vec<f64> {
    vec![0.485, 0.456, 0.406]
}
fn default_std() -> Vec<f64> {
    vec![0.229, 0.224, 0.225]
}
fn default_resample() -> u32 {
    3
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(f64),
        Many(Vec<f64>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(v) => vec![v; 3],
        OneOrMany::Many(v) => v,
    })
}

impl Default for ImageProcessorConfig {
    fn default() -> Self {
        ImageProcessorConfig {
            size: default_size(),
            crop_size: default_size(),
            do_resize: true,
            do_center_crop: false,
            do_rescale: true,
            rescale_factor: default_rescale_factor(),
            do_normalize: true,
            image_mean: default_mean(),
            image_std: default_std(),
            do_convert_rgb: None,
            resample: default_resample(),
            image_seq_length: None,
        }
    }
}

impl ImageProcessorConfig {
    /// Reads and checks a `preprocessor_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ProcessorError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProcessorError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: ImageProcessorConfig =
            serde_json::from_str(&text).map_err(|source| ProcessorError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        cfg.validate().map_err(|reason| ProcessorError::Invalid {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(cfg)
    }

    /// Checks what serde cannot: a supported filter, three channels of mean/std, sizes above 0.
    pub fn validate(&self) -> Result<(), String> {
        if self.do_resize && Filter::from_pil(self.resample).is_none() {
            return Err(format!(
                "resample {} is not supported (1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING)",
                self.resample
            ));
        }
        if self.image_mean.len() != 3 || self.image_std.len() != 3 {
            return Err("image_mean and image_std must have 3 values (RGB)".to_string());
        }
        if self.image_std.contains(&0.0) {
            return Err("image_std must not contain 0".to_string());
        }
        let zero = |s: &SizeSpec| match *s {
            SizeSpec::Exact { height, width } => height == 0 || width == 0,
            SizeSpec::ShortestEdge { shortest_edge, .. } => shortest_edge == 0,
        };
        if (self.do_resize && zero(&self.size)) || (self.do_center_crop && zero(&self.crop_size)) {
            return Err("size and crop_size must be above 0".to_string());
        }
        if self.do_center_crop && !matches!(self.crop_size, SizeSpec::Exact { .. }) {
            return Err("crop_size must have \"height\" and \"width\"".to_string());
        }
        Ok(())
    }

    /// The (width, height) of the pixel values produced for an image of `(w, h)`.
    pub fn output_size(&self, (w, h): (u32, u32)) -> (u32, u32) {
        let mut size = (w, h);
        if self.do_resize {
            size = self.size.output_size(size);
        }
        if self.do_center_crop {
            if let SizeSpec::Exact { height, width } = self.crop_size {
                size = (width, height);
            }
        }
        size
    }
}

/// transformers' numpy `center_crop`: crop around the centre, padding with zeros where the image
/// is smaller than the crop.
fn center_crop(img: &RgbImage, crop_w: u32, crop_h: u32) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    // numpy pads a too-small image by ceil(excess / 2) before and slices from the floored
    // offset; both reduce to reading source pixel (top + y, left + x), zero outside.
    let top = (h - crop_h as i64).div_euclid(2);
    let left = (w - crop_w as i64).div_euclid(2);
    RgbImage::from_fn(crop_w, crop_h, |x, y| {
        let (sx, sy) = (left + x as i64, top + y as i64);
        if (0..w).contains(&sx) && (0..h).contains(&sy) {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// One image through resize → centre crop → rescale → normalise, as f32 CHW. The arithmetic is
/// numpy's: `rescale` multiplies in f64 and rounds to f32, `normalize` subtracts and divides in
/// f32 with mean and std rounded to f32 — so the result equals transformers' bit for bit.
pub fn preprocess(img: &RgbImage, cfg: &ImageProcessorConfig) -> (Vec<f32>, (u32, u32)) {
    let mut resized = None;
    if cfg.do_resize {
        let (w, h) = cfg.size.output_size(img.dimensions());
        if (w, h) != img.dimensions() {
            let filter = Filter::from_pil(cfg.resample).unwrap_or(Filter::Bicubic);
            resized = Some(resize_pillow(img, w, h, filter));
        }
    }
    let mut cropped = None;
    if cfg.do_center_crop {
        if let SizeSpec::Exact { height, width } = cfg.crop_size {
            cropped = Some(center_crop(resized.as_ref().unwrap_or(img), width, height));
        }
    }
    let cur = cropped.as_ref().or(resized.as_ref()).unwrap_or(img);
    let (w, h) = cur.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    let mean: [f32; 3] = std::array::from_fn(|c| cfg.image_mean[c] as f32);
    let std: [f32; 3] = std::array::from_fn(|c| cfg.image_std[c] as f32);
    for (i, px) in cur.pixels().enumerate() {
        for c in 0..3 {
            let mut v = if cfg.do_rescale {
                (px[c] as f64 * cfg.rescale_factor) as f32
            } else {
                px[c] as f32
            };
            if cfg.do_normalize {
                v = (v - mean[c]) / std[c];
            }
            out[c * plane + i] = v;
        }
    }
    (out, (w, h))
}

/// `pixel_values` for a batch: f32 (B, 3, H, W) on `device`. All images must come out the same
/// size, which they always do with Florence-2's fixed 768×768.
pub fn pixel_values(
    images: &[&RgbImage],
    cfg: &ImageProcessorConfig,
    device: &Device,
) -> candle_core::Result<Tensor> {
    cfg.validate().map_err(candle_core::Error::msg)?;
    if images.is_empty() {
        candle_core::bail!("pixel_values: no images");
    }
    let mut data = Vec::new();
    let mut size = None;
    for img in images {
        let (values, wh) = preprocess(img, cfg);
        match size {
            None => size = Some(wh),
            Some(s) if s != wh => candle_core::bail!(
                "pixel_values: images resize to different sizes ({}×{} and {}×{})",
                s.0,
                s.1,
                wh.0,
                wh.1
            ),
            Some(_) => {}
        }
        data.extend(values);
    }
    let (w, h) = size.expect("at least one image");
    Tensor::from_vec(data, (images.len(), 3, h as usize, w as usize), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic test images, generated identically by the Python script that produced the
    /// Pillow checksums (`tests/fixtures/processor/make_fixtures.py`).
    pub(super) fn generate(kind: &str, w: u32, h: u32, seed: u64) -> RgbImage {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        };
        let mut img = RgbImage::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let p = match kind {
                    "noise" => [next(), next(), next()],
                    "gradient" => {
                        let gx = if w > 1 { x * 255 / (w - 1) } else { 0 };
                        let gy = if h > 1 { y * 255 / (h - 1) } else { 0 };
                        let gd = if w + h > 2 {
                            (x + y) * 255 / (w + h - 2)
                        } else {
                            0
                        };
                        [gx as u8, gy as u8, gd as u8]
                    }
                    "checker" => {
                        let c = |s: u32| {
                            if (x / s + y / s).is_multiple_of(2) {
                                0
                            } else {
                                255
                            }
                        };
                        [c(1), c(3), c(7)]
                    }
                    "blocks" => {
                        // Large flat areas with hard edges and random levels: ringing + clipping.
                        let cell = ((x / 13) * 31 + (y / 11) * 17) as u64 ^ seed;
                        let v = cell.wrapping_mul(0x9E3779B97F4A7C15) >> 40;
                        [v as u8, (v >> 8) as u8, (v >> 16) as u8]
                    }
                    other => panic!("unknown image kind {other}"),
                };
                img.put_pixel(x, y, image::Rgb(p));
            }
        }
        img
    }

    /// FNV-1a 64 of a byte slice; the Python script computes the same.
    pub(super) fn fnv1a64(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf29ce484222325;
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/processor")
            .join(name)
    }

    #[test]
    fn resize_matches_pillow_checksums() {
        let text = std::fs::read_to_string(fixture("resize_cases.json")).unwrap();
        let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cases = cases["cases"].as_array().unwrap();
        assert!(cases.len() >= 10);
        let mut failures = Vec::new();
        for case in cases {
            let get = |k: &str| case[k].as_u64().unwrap();
            let kind = case["kind"].as_str().unwrap();
            let src = generate(kind, get("src_w") as u32, get("src_h") as u32, get("seed"));
            let filter = Filter::from_pil(get("filter") as u32).unwrap();
            let out = resize_pillow(&src, get("dst_w") as u32, get("dst_h") as u32, filter);
            assert_eq!(
                fnv1a64(src.as_raw()),
                u64::from_str_radix(case["src_fnv"].as_str().unwrap(), 16).unwrap(),
                "source image generator differs for {case}"
            );
            let want = u64::from_str_radix(case["pil_fnv"].as_str().unwrap(), 16).unwrap();
            if fnv1a64(out.as_raw()) != want {
                failures.push(case.to_string());
            }
        }
        assert!(failures.is_empty(), "differs from Pillow: {failures:#?}");
    }

    #[test]
    fn small_resize_matches_pillow_bytes() {
        // 5×3 → 4×7 upsample and 7×5 → 3×2 downsample, raw Pillow output.
        let text = std::fs::read_to_string(fixture("resize_small.json")).unwrap();
        let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
        for case in cases["cases"].as_array().unwrap() {
            let get = |k: &str| case[k].as_u64().unwrap() as u32;
            let src: Vec<u8> = serde_json::from_value(case["src"].clone()).unwrap();
            let want: Vec<u8> = serde_json::from_value(case["pil"].clone()).unwrap();
            let src = RgbImage::from_raw(get("src_w"), get("src_h"), src).unwrap();
            let out = resize_bicubic(&src, get("dst_w"), get("dst_h"));
            assert_eq!(out.as_raw(), &want, "{}", case["name"]);
        }
    }

    #[test]
    fn identity_resize_is_a_copy() {
        let img = generate("noise", 9, 4, 3);
        assert_eq!(resize_bicubic(&img, 9, 4), img);
        assert_eq!(resize_bicubic(&img, 0, 4).dimensions(), (0, 4));
    }

    #[test]
    fn pixel_values_match_transformers() {
        // Written by transformers' CLIPImageProcessorPil with Florence-2's settings but a small
        // target size; values stored as f32 bit patterns.
        let text = std::fs::read_to_string(fixture("pixel_values.json")).unwrap();
        let root: serde_json::Value = serde_json::from_str(&text).unwrap();
        for case in root["cases"].as_array().unwrap() {
            let cfg: ImageProcessorConfig = serde_json::from_value(case["config"].clone()).unwrap();
            let get = |k: &str| case[k].as_u64().unwrap();
            let img = generate(
                case["kind"].as_str().unwrap(),
                get("src_w") as u32,
                get("src_h") as u32,
                get("seed"),
            );
            let want: Vec<u32> = serde_json::from_value(case["bits"].clone()).unwrap();
            let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).unwrap();
            let t = pixel_values(&[&img, &img], &cfg, &Device::Cpu).unwrap();
            assert_eq!(t.dims(), [2, shape[0], shape[1], shape[2]]);
            let got: Vec<f32> = t.get(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{}", case["name"]);
        }
    }

    #[test]
    fn config_defaults_are_florence() {
        let cfg: ImageProcessorConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, ImageProcessorConfig::default());
        assert_eq!(cfg.output_size((4032, 3024)), (768, 768));
        cfg.validate().unwrap();
    }

    #[test]
    fn config_parses_florence_file() {
        let json = r#"{
            "_valid_processor_keys": ["images"],
            "crop_size": {"height": 768, "width": 768},
            "do_center_crop": false,
            "do_convert_rgb": null,
            "do_normalize": true,
            "do_rescale": true,
            "do_resize": true,
            "image_mean": [0.485, 0.456, 0.406],
            "image_processor_type": "CLIPImageProcessor",
            "image_seq_length": 577,
            "image_std": [0.229, 0.224, 0.225],
            "processor_class": "Florence2Processor",
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"height": 768, "width": 768}
        }"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("preprocessor_config.json");
        std::fs::write(&path, json).unwrap();
        let cfg = ImageProcessorConfig::from_file(&path).unwrap();
        assert_eq!(cfg.image_seq_length, Some(577));
        assert_eq!(cfg.rescale_factor, 1.0 / 255.0);
        assert_eq!(
            cfg.size,
            SizeSpec::Exact {
                height: 768,
                width: 768
            }
        );
    }

    #[test]
    fn config_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("preprocessor_config.json");
        std::fs::write(&path, r#"{"resample": 0}"#).unwrap();
        let err = ImageProcessorConfig::from_file(&path).unwrap_err();
        assert!(matches!(err, ProcessorError::Invalid { .. }));
        assert!(
            err.to_string().contains("preprocessor_config.json"),
            "{err}"
        );
        std::fs::write(&path, r#"{"size": {"max_height": 5}}"#).unwrap();
        assert!(matches!(
            ImageProcessorConfig::from_file(&path),
            Err(ProcessorError::Parse { .. })
        ));
        let missing = dir.path().join("nope.json");
        assert!(matches!(
            ImageProcessorConfig::from_file(&missing),
            Err(ProcessorError::Read { .. })
        ));
    }

    #[test]
    fn size_specs() {
        let se = |s, l| SizeSpec::ShortestEdge {
            shortest_edge: s,
            longest_edge: l,
        };
        let parsed: SizeSpec = serde_json::from_str("224").unwrap();
        assert_eq!(parsed, se(224, None));
        let parsed: SizeSpec = serde_json::from_str(r#"{"shortest_edge": 224}"#).unwrap();
        assert_eq!(parsed, se(224, None));
        // transformers: int(224 * 640 / 480) = 298, portrait and landscape.
        assert_eq!(se(224, None).output_size((640, 480)), (298, 224));
        assert_eq!(se(224, None).output_size((480, 640)), (224, 298));
        // get_size_with_aspect_ratio: 1000/100*224 > 500 → raw 50 → 50×500.
        assert_eq!(se(224, Some(500)).output_size((1000, 100)), (500, 50));
        assert_eq!(se(100, Some(500)).output_size((100, 300)), (100, 300));
    }

    #[test]
    fn center_crop_pads_like_numpy() {
        let img = generate("noise", 5, 4, 9);
        // Crop inside: top = (4-2)//2 = 1, left = (5-3)//2 = 1.
        let c = center_crop(&img, 3, 2);
        assert_eq!(c.get_pixel(0, 0), img.get_pixel(1, 1));
        // Larger than the image: the image sits at ceil((8-5)/2) = 2, ceil((6-4)/2) = 1.
        let c = center_crop(&img, 8, 6);
        assert_eq!(c.get_pixel(2, 1), img.get_pixel(0, 0));
        assert_eq!(c.get_pixel(1, 1), &image::Rgb([0, 0, 0]));
        assert_eq!(c.get_pixel(6, 4), img.get_pixel(4, 3));
        assert_eq!(c.get_pixel(7, 5), &image::Rgb([0, 0, 0]));
    }
}
