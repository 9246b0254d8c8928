//! The plan of a network's forward pass: a list of steps, each one kernel call over one or more
//! consecutive layers, built once from what decides it and run by [`crate::model::architecture::network::Network::forward`].
//!
//! What decides a plan: each layer's kind, whether it is frozen, whether it carries a LoRA
//! adapter, training or inference, and whether the fused CPU kernels apply (f32 on the CPU).
//! The network keeps one plan for training and one for inference and rebuilds both when one of
//! these changes (`freeze`, `head`, `adapt`, `merge`; a move to another device builds a new
//! network), never per batch.
//!
//! The fusion rules, in the order they are tried at each layer ([`Plan::build`]):
//!
//! | at | followed by | when | step |
//! |---|---|---|---|
//! | conv | max-pool | always | [`Step::ConvPool`] |
//! | conv with bias and ReLU, stride 1 | batch norm (+ max-pool) | training, fast, both trainable | [`Step::ConvBatchNorm`] |
//! | batch norm | max-pool | training, fast, trainable, on an image | [`Step::BatchNormPool`] |
//! | dropout | (flatten +) plain dense | training, rate > 0, fast | inside the dense's [`Step::Dense`] |
//! | dropout | anything else | inference, or rate 0 | no step |
//! | flatten | plain dense | fast | inside the dense's [`Step::Dense`] |
//! | dense | | adapter | [`Step::DenseAdapted`] |
//! | dense | | | [`Step::Dense`] |
//!
//! A plain dense layer is one without a LoRA adapter. Anything else runs alone
//! ([`Step::Alone`]): its own kernel, by its kind's `forward` (`model::architecture::layers`).

use std::fmt;

/// What a convolution's steps need to know of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvPlan {
    /// Zero padding on each side.
    pub padding: usize,
    /// The stride in both directions.
    pub stride: usize,
    /// Whether it adds a bias.
    pub bias: bool,
    /// Whether ReLU follows.
    pub relu: bool,
}

/// What the fusion rules need of one layer's kind; a kind no rule names runs alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PlanKind {
    /// A convolution.
    Conv(ConvPlan),
    /// A 2 × 2 max-pool.
    MaxPool,
    /// A batch norm, on an image (`image`) or a flat vector.
    BatchNorm {
        /// Whether its input is an image.
        image: bool,
    },
    /// A dropout of this rate.
    Dropout(f32),
    /// An implied flatten.
    Flatten,
    /// A dense layer, with ReLU (`relu`) or without (the output layer).
    Dense {
        /// Whether ReLU follows the product.
        relu: bool,
    },
    /// Anything else: it runs alone, through its own kernel.
    Alone,
}

/// One layer as the plan sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanLayer {
    /// Its kind.
    pub kind: PlanKind,
    /// The kernel that runs it alone, in this plan's mode.
    pub kernel: &'static str,
    /// Whether its own parameters are frozen (see `Network::is_frozen`).
    pub frozen: bool,
    /// Whether it carries a LoRA adapter.
    pub adapted: bool,
}

/// One kernel call. Layer numbers are 0-based positions in the network's layers. Combined
/// steps are named by their layers in order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// One layer through its own kernel (`Kind::forward`).
    Alone {
        /// The layer.
        layer: usize,
        /// Its kernel, by name.
        kernel: &'static str,
    },
    /// Convolution (+ bias, + ReLU) + 2 × 2 max-pool, one op.
    ConvPool {
        /// The convolution.
        conv: usize,
        /// How it runs.
        settings: ConvPlan,
        /// The max-pool.
        pool: usize,
    },
    /// Convolution + bias + ReLU + training-mode batch norm (+ 2 × 2 max-pool), one op.
    ConvBatchNorm {
        /// The convolution.
        conv: usize,
        /// Its padding.
        padding: usize,
        /// The batch norm.
        bn: usize,
        /// The max-pool run inside the same op.
        pool: Option<usize>,
    },
    /// Training-mode batch norm + 2 × 2 max-pool, one op.
    BatchNormPool {
        /// The batch norm.
        bn: usize,
        /// The max-pool.
        pool: usize,
    },
    /// A dense layer without adapter: flatten, dropout, product, bias and ReLU in one op.
    Dense {
        /// The dense layer.
        dense: usize,
        /// Whether ReLU follows the product.
        relu: bool,
        /// The dropout applied to its input inside the op (training), and its rate.
        dropout: Option<(usize, f32)>,
        /// The flatten done inside the op.
        flatten: Option<usize>,
    },
    /// A dense layer with its LoRA adapter (product, plus the adapter, then ReLU).
    DenseAdapted {
        /// The dense layer.
        dense: usize,
        /// Whether ReLU follows.
        relu: bool,
    },
}

impl Step {
    /// The layers this step runs, in order.
    pub fn layers(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(3);
        match *self {
            Step::Alone { layer, .. } | Step::DenseAdapted { dense: layer, .. } => out.push(layer),
            Step::ConvPool { conv, pool, .. } => out.extend([conv, pool]),
            Step::ConvBatchNorm { conv, bn, pool, .. } => {
                out.extend([Some(conv), Some(bn), pool].into_iter().flatten())
            }
            Step::BatchNormPool { bn, pool } => out.extend([bn, pool]),
            Step::Dense { dense, dropout, flatten, .. } => {
                out.extend([dropout.map(|(d, _)| d), flatten, Some(dense)].into_iter().flatten())
            }
        }
        out
    }

    /// The kernel the step calls, by name.
    pub fn kernel(&self) -> &'static str {
        match self {
            Step::Alone { kernel, .. } => kernel,
            Step::ConvPool { settings: ConvPlan { relu: true, .. }, .. } => "conv2d_relu_pool",
            Step::ConvPool { .. } => "conv2d_pool",
            Step::ConvBatchNorm { .. } => "conv2d_relu_batch_norm_train",
            Step::BatchNormPool { .. } => "batch_norm_pool_train",
            Step::Dense { dropout: Some(_), .. } => "dropout_linear",
            Step::Dense { dropout: None, .. } => "linear",
            Step::DenseAdapted { .. } => "linear + lora",
        }
    }
}

/// The steps of one forward pass, in order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Plan {
    /// For each of `count` layers, the 1-based number of the step that runs it and that step;
    /// `None` for a layer no step runs (a dropout outside training).
    pub fn by_layer(&self, count: usize) -> Vec<Option<(usize, Step)>> {
        let mut out = vec![None; count];
        for (n, step) in self.steps.iter().enumerate() {
            for i in step.layers() {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some((n + 1, *step));
                }
            }
        }
        out
    }
}

/// Whether layer `i` is a dense layer without an adapter.
fn plain_dense(layers: &[PlanLayer], i: usize) -> bool {
    layers.get(i).is_some_and(|l| matches!(l.kind, PlanKind::Dense { .. }) && !l.adapted)
}

/// Whether layer `i` is a max-pool.
fn is_pool(layers: &[PlanLayer], i: usize) -> bool {
    layers.get(i).is_some_and(|l| l.kind == PlanKind::MaxPool)
}

/// Whether layer `i` is a batch norm.
fn is_batch_norm(layers: &[PlanLayer], i: usize) -> bool {
    layers.get(i).is_some_and(|l| matches!(l.kind, PlanKind::BatchNorm { .. }))
}

impl Plan {
    /// The plan for `layers`, in training or inference, with the fused CPU kernels (`fast`) or
    /// without, by the fusion rules of this module's table.
    pub fn build(layers: &[PlanLayer], train: bool, fast: bool) -> Plan {
        let mut steps = Vec::with_capacity(layers.len());
        // A dropout and a flatten waiting for the dense layer that runs them inside its op.
        let (mut dropout, mut flatten) = (None, None);
        let mut i = 0;
        while i < layers.len() {
            let layer = layers[i];
            let alone = Some(Step::Alone { layer: i, kernel: layer.kernel });
            let step = match layer.kind {
                PlanKind::Conv(settings) if is_pool(layers, i + 1) => {
                    Some(Step::ConvPool { conv: i, settings, pool: i + 1 })
                }
                PlanKind::Conv(ConvPlan { padding, stride: 1, bias: true, relu: true })
                    if is_batch_norm(layers, i + 1) && train && fast && !layer.frozen && !layers[i + 1].frozen =>
                {
                    let pool = is_pool(layers, i + 2).then_some(i + 2);
                    Some(Step::ConvBatchNorm { conv: i, padding, bn: i + 1, pool })
                }
                PlanKind::BatchNorm { image: true } if train && fast && !layer.frozen && is_pool(layers, i + 1) => {
                    Some(Step::BatchNormPool { bn: i, pool: i + 1 })
                }
                PlanKind::Dropout(rate) if train && rate > 0.0 => {
                    let dense_next = plain_dense(layers, i + 1)
                        || (layers.get(i + 1).is_some_and(|l| l.kind == PlanKind::Flatten)
                            && plain_dense(layers, i + 2));
                    if fast && dense_next {
                        dropout = Some((i, rate));
                        None
                    } else {
                        alone
                    }
                }
                // A dropout outside training (or of rate 0) does nothing.
                PlanKind::Dropout(_) => None,
                PlanKind::Flatten if fast && plain_dense(layers, i + 1) => {
                    flatten = Some(i);
                    None
                }
                PlanKind::Dense { relu } if layer.adapted => Some(Step::DenseAdapted { dense: i, relu }),
                PlanKind::Dense { relu } => {
                    Some(Step::Dense { dense: i, relu, dropout: dropout.take(), flatten: flatten.take() })
                }
                PlanKind::Conv(_)
                | PlanKind::MaxPool
                | PlanKind::BatchNorm { .. }
                | PlanKind::Flatten
                | PlanKind::Alone => alone,
            };
            if let Some(step) = step {
                i = step.layers().iter().max().map_or(i, |&last| last.max(i)) + 1;
                steps.push(step);
            } else {
                i += 1;
            }
        }
        Plan { steps }
    }
}

impl fmt::Display for Plan {
    /// One step a line: its layers (1-based, as `summary` numbers them) and its kernel.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, step) in self.steps.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            let layers: Vec<String> = step.layers().iter().map(|i| (i + 1).to_string()).collect();
            write!(f, "{} {}", layers.join("+"), step.kernel())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::architecture::layers::{Activation, Mode, Output, Shape};
    use crate::model::architecture::layers::{
        AvgPool, BatchNorm, Conv, Dense, Dropout, Flatten, GlobalAvgPool, Kind, MaxPool,
    };

    /// The plan of the layers named by `words` (`bn` after an image, `bn1` after a vector),
    /// with the layers at `frozen` frozen and at `adapted` adapted, one step a `|`.
    fn text(words: &str, (frozen, adapted): (&[usize], &[usize]), train: bool, fast: bool) -> String {
        let (image, flat) = (Shape::Image(8, 8, 8), Shape::Flat(8));
        let conv = Conv { filters: 8, kernel: 3, same_padding: true, ..Conv::default() };
        let bare = Conv { bias: false, relu: false, ..conv.clone() };
        let strided = Conv { stride: 2, ..conv.clone() };
        let layers: Vec<PlanLayer> = words
            .split(' ')
            .enumerate()
            .map(|(i, word)| {
                let (kind, input): (&dyn Kind, Shape) = match word {
                    "conv" => (&conv, image),
                    "bare" => (&bare, image),
                    "strided" => (&strided, image),
                    "relu" => (&Activation::Relu, image),
                    "bn" => (&BatchNorm, image),
                    "bn1" => (&BatchNorm, flat),
                    "pool" => (&MaxPool, image),
                    "avgpool" => (&AvgPool, image),
                    "gap" => (&GlobalAvgPool, image),
                    "drop" => (&Dropout { rate: 0.25 }, image),
                    "flatten" => (&Flatten, image),
                    "dense" => (&Dense { units: 8, ..Dense::default() }, flat),
                    "out" => (&Output::plain(10), flat),
                    _ => panic!("no test word {word}"),
                };
                let frozen = frozen.contains(&i);
                PlanLayer {
                    kind: kind.plan(input),
                    kernel: kind.kernel(Mode { train, fast, frozen }),
                    frozen,
                    adapted: adapted.contains(&i),
                }
            })
            .collect();
        Plan::build(&layers, train, fast).to_string().replace('\n', " | ")
    }

    #[test]
    fn the_rules_fuse_what_the_table_says() {
        let l = "conv bn pool conv pool drop flatten dense drop out";
        let none = (&[][..], &[][..]);
        assert_eq!(
            text(l, none, true, true),
            "1+2+3 conv2d_relu_batch_norm_train | 4+5 conv2d_relu_pool | 6+7+8 dropout_linear | 9+10 dropout_linear"
        );
        assert_eq!(
            text(l, none, false, true),
            "1 conv2d | 2 batch_norm_fixed | 3 max_pool2d | 4+5 conv2d_relu_pool | 7+8 linear | 10 linear"
        );
        assert_eq!(
            text(l, none, true, false),
            "1 conv2d | 2 batch_norm (candle) | 3 max_pool2d | 4+5 conv2d_relu_pool | 6 dropout | 7 flatten \
             | 8 linear | 9 dropout | 10 linear"
        );
    }

    #[test]
    fn frozen_and_adapted_layers_change_the_plan() {
        let l = "conv bn pool flatten dense drop out";
        assert_eq!(
            text(l, (&[1], &[]), true, true),
            "1 conv2d | 2 batch_norm_fixed | 3 max_pool2d | 4+5 linear | 6+7 dropout_linear"
        );
        assert_eq!(
            text(l, (&[1], &[]), true, false),
            "1 conv2d | 2 batch_norm (candle, frozen) | 3 max_pool2d | 4 flatten | 5 linear | 6 dropout | 7 linear"
        );
        assert_eq!(
            text(l, (&[], &[4]), true, true),
            "1+2+3 conv2d_relu_batch_norm_train | 4 flatten | 5 linear + lora | 6+7 dropout_linear"
        );
        // A batch norm after a dense layer (on a vector) is never pooled; a batch norm after a
        // pool takes the next pool.
        let l = "conv pool bn pool flatten dense bn1 out";
        assert_eq!(
            text(l, (&[], &[]), true, true),
            "1+2 conv2d_relu_pool | 3+4 batch_norm_pool_train | 5+6 linear | 7 batch_norm_train | 8 linear"
        );
    }

    #[test]
    fn only_a_stride_1_convolution_with_bias_and_relu_takes_the_batch_norm() {
        let none = (&[][..], &[][..]);
        assert_eq!(text("conv bn pool out", none, true, true), "1+2+3 conv2d_relu_batch_norm_train | 4 linear");
        assert_eq!(
            text("bare bn relu pool out", none, true, true),
            "1 conv2d | 2 batch_norm_train | 3 relu | 4 max_pool2d | 5 linear"
        );
        assert_eq!(text("strided bn out", none, true, true), "1 conv2d | 2 batch_norm_train | 3 linear");
        assert_eq!(text("bare pool out", none, true, true), "1+2 conv2d_pool | 3 linear");
    }

    #[test]
    fn every_layer_runs_once_in_order() {
        for train in [false, true] {
            for fast in [false, true] {
                let plan = text("conv bn bn pool avgpool gap dense", (&[], &[]), train, fast);
                let run: Vec<usize> = plan
                    .split(" | ")
                    .flat_map(|step| step.split(' ').next().unwrap().split('+').map(|n| n.parse().unwrap()))
                    .collect();
                assert_eq!(run, (1..=7).collect::<Vec<usize>>(), "{plan}");
            }
        }
    }
}
