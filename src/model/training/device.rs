//! Where a model computes: the candle device holding its tensors and the pool of worker
//! threads that the CPU kernels (and augmentation) run on.

use std::fmt;

use candle_core::Device;
use rayon::ThreadPool;

use crate::model::error::{ModelError, Result};

/// The kind of device a model's tensors live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    /// The CPU, where the fused kernels run.
    #[default]
    Cpu,
    /// The first CUDA GPU; needs a build with the `cuda` feature and a GPU with its driver.
    Cuda,
}

impl DeviceKind {
    /// Every kind, in the order `device cpu|cuda` lists them.
    pub const ALL: [DeviceKind; 2] = [DeviceKind::Cpu, DeviceKind::Cuda];

    /// The lowercase name: `cpu` or `cuda`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The candle device of `kind`: the CPU, or CUDA GPU 0. Without one the error says why and
/// what to do: build with the `cuda` feature, or (in such a build) check for a GPU and driver.
pub fn device(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda => Device::new_cuda(0).map_err(|e| ModelError::Device(no_cuda(&e))),
    }
}

/// The message for a CUDA device that could not be opened: candle's error without the backtrace
/// it may carry, and what to do.
fn no_cuda(e: &candle_core::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    if !cfg!(feature = "cuda") {
        format!("no CUDA device: {first} (CUDA needs a build with `cargo build --release --features cuda`)")
    } else if first.contains("CUDA_ERROR_STUB_LIBRARY") {
        "no CUDA device: this machine has no NVIDIA driver (the binary runs on the CUDA stub library)".into()
    } else {
        format!("no CUDA device: {first} (this build has CUDA: is an NVIDIA GPU with its driver present?)")
    }
}

/// A pool of `threads` worker threads (at least 1) to run training and augmentation in.
pub fn thread_pool(threads: usize) -> Result<ThreadPool> {
    if threads == 0 {
        return Err(ModelError::Threads("threads needs at least 1".into()));
    }
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| ModelError::Threads(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_lowercase_names() {
        assert_eq!(DeviceKind::Cpu.as_str(), "cpu");
        assert_eq!(DeviceKind::Cuda.to_string(), "cuda");
        assert_eq!(DeviceKind::default(), DeviceKind::Cpu);
    }

    #[test]
    fn the_cpu_is_always_there() {
        assert!(device(DeviceKind::Cpu).unwrap().is_cpu());
    }

    #[test]
    fn cuda_opens_or_says_why_not() {
        match device(DeviceKind::Cuda) {
            Ok(d) => assert!(d.is_cuda()),
            Err(e) => {
                assert!(matches!(e, ModelError::Device(_)), "{e:?}");
                let e = e.to_string();
                assert!(e.starts_with("no CUDA device: "), "{e}");
                let hints: &[&str] = if cfg!(feature = "cuda") {
                    &["GPU with its driver", "no NVIDIA driver"]
                } else {
                    &["--features cuda"]
                };
                assert!(hints.iter().any(|h| e.contains(h)), "{e}");
                assert!(!e.contains('\n'), "one line, no backtrace: {e}");
            }
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_cuda_feature_the_error_names_it() {
        let e = device(DeviceKind::Cuda).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "no CUDA device: {} (CUDA needs a build with `cargo build --release --features cuda`)",
                candle_core::Error::NotCompiledWithCudaSupport
            )
        );
    }

    #[test]
    fn pools_have_the_threads_asked_for() {
        let pool = thread_pool(3).unwrap();
        assert_eq!(pool.current_num_threads(), 3);
        assert_eq!(pool.install(rayon::current_num_threads), 3);
        let e = thread_pool(0).unwrap_err();
        assert!(matches!(e, ModelError::Threads(_)), "{e:?}");
        assert_eq!(e.to_string(), "threads needs at least 1");
    }
}
