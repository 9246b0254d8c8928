//! The plan of a network's forward pass: a list of steps, each one kernel call over one or more
//! consecutive layers, built once from what decides it and run by [`super::network::Network::forward`].
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
//! | conv | max-pool | always | [`Step::Conv`] with its pool |
//! | conv | batch norm (+ max-pool) | training, fast, both trainable | [`Step::ConvBatchNorm`] |
//! | batch norm | max-pool | training, fast, trainable, 4-d | [`Step::BatchNorm`] `Batch` with its pool |
//! | dropout | (flatten +) plain dense | training, rate > 0, fast | inside the dense's [`Step::Dense`] |
//! | flatten | plain dense | fast | inside the dense's [`Step::Dense`] |
//!
//! A plain dense layer is one without a LoRA adapter. Anything else runs alone.

use std::fmt;

/// What the plan needs to know of one layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerKind {
    /// A convolution with bias and ReLU.
    Conv,
    /// A 2 × 2 max-pool.
    MaxPool,
    /// A 2 × 2 average pool.
    AvgPool,
    /// A batch norm; `rank` of its input (4 after a convolution, 2 after a dense layer).
    BatchNorm {
        /// The rank of the layer's input.
        rank: usize,
    },
    /// A dropout of this rate.
    Dropout(f32),
    /// An implied flatten.
    Flatten,
    /// A dense layer (ReLU or the output layer).
    Dense,
    /// A global average pool.
    GlobalAvgPool,
}

/// One layer as the plan sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanLayer {
    /// Its kind.
    pub kind: LayerKind,
    /// Whether its own parameters are frozen (see `Network::is_frozen`).
    pub frozen: bool,
    /// Whether it carries a LoRA adapter.
    pub adapted: bool,
}

/// How a batch norm runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchNormMode {
    /// Batch statistics through the fused CPU op, moving statistics updated (training).
    Batch,
    /// Moving statistics through the fused CPU op (inference, or frozen).
    Fixed,
    /// Moving statistics with candle's ops and detached parameters (frozen, training, off the
    /// fused path).
    Frozen,
    /// candle's own batch norm (off the fused path).
    Candle,
}

/// One kernel call. Layer numbers are 0-based positions in the network's layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Convolution + bias + ReLU, with the 2 × 2 max-pool after it when `pool` is set.
    Conv {
        /// The convolution.
        conv: usize,
        /// The max-pool run inside the same op.
        pool: Option<usize>,
    },
    /// Convolution + bias + ReLU + training-mode batch norm (+ 2 × 2 max-pool), one op.
    ConvBatchNorm {
        /// The convolution.
        conv: usize,
        /// The batch norm.
        bn: usize,
        /// The max-pool run inside the same op.
        pool: Option<usize>,
    },
    /// A 2 × 2 max-pool.
    MaxPool(usize),
    /// A 2 × 2 average pool.
    AvgPool(usize),
    /// A global average pool.
    GlobalAvgPool(usize),
    /// A batch norm in `mode`, with the 2 × 2 max-pool after it when `pool` is set (only in
    /// [`BatchNormMode::Batch`]).
    BatchNorm {
        /// The batch norm.
        bn: usize,
        /// How it runs.
        mode: BatchNormMode,
        /// The max-pool run inside the same op.
        pool: Option<usize>,
    },
    /// A dropout on its own (training).
    Dropout(usize),
    /// A flatten on its own.
    Flatten(usize),
    /// A dense layer without adapter: flatten, dropout, product, bias and ReLU in one op.
    Dense {
        /// The dense layer.
        dense: usize,
        /// The dropout applied to its input inside the op (training).
        dropout: Option<usize>,
        /// The flatten done inside the op.
        flatten: Option<usize>,
    },
    /// A dense layer with its LoRA adapter (product, plus the adapter, then ReLU).
    DenseAdapted(usize),
}

impl Step {
    /// The layers this step runs, in order.
    pub fn layers(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(3);
        match *self {
            Step::Conv { conv, pool } => out.extend([Some(conv), pool].into_iter().flatten()),
            Step::ConvBatchNorm { conv, bn, pool } => out.extend([Some(conv), Some(bn), pool].into_iter().flatten()),
            Step::BatchNorm { bn, pool, .. } => out.extend([Some(bn), pool].into_iter().flatten()),
            Step::Dense { dense, dropout, flatten } => {
                out.extend([dropout, flatten, Some(dense)].into_iter().flatten())
            }
            Step::MaxPool(i)
            | Step::AvgPool(i)
            | Step::GlobalAvgPool(i)
            | Step::Dropout(i)
            | Step::Flatten(i)
            | Step::DenseAdapted(i) => out.push(i),
        }
        out
    }

    /// The kernel the step calls, by name.
    pub fn kernel(&self) -> &'static str {
        match self {
            Step::Conv { pool: Some(_), .. } => "conv2d_relu_pool",
            Step::Conv { pool: None, .. } => "conv2d",
            Step::ConvBatchNorm { .. } => "conv2d_relu_batch_norm_train",
            Step::MaxPool(_) => "max_pool2d",
            Step::AvgPool(_) => "avg_pool2d",
            Step::GlobalAvgPool(_) => "global_avg_pool",
            Step::BatchNorm { mode: BatchNormMode::Batch, pool: Some(_), .. } => "batch_norm_pool_train",
            Step::BatchNorm { mode: BatchNormMode::Batch, pool: None, .. } => "batch_norm_train",
            Step::BatchNorm { mode: BatchNormMode::Fixed, .. } => "batch_norm_fixed",
            Step::BatchNorm { mode: BatchNormMode::Frozen, .. } => "batch_norm (candle, frozen)",
            Step::BatchNorm { mode: BatchNormMode::Candle, .. } => "batch_norm (candle)",
            Step::Dropout(_) => "dropout",
            Step::Flatten(_) => "flatten",
            Step::Dense { dropout: Some(_), .. } => "dropout_linear",
            Step::Dense { dropout: None, .. } => "linear",
            Step::DenseAdapted(_) => "linear + lora",
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
    layers.get(i).is_some_and(|l| l.kind == LayerKind::Dense && !l.adapted)
}

/// Whether layer `i` is a max-pool.
fn is_pool(layers: &[PlanLayer], i: usize) -> bool {
    layers.get(i).is_some_and(|l| l.kind == LayerKind::MaxPool)
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
            let step = match layer.kind {
                LayerKind::Conv if is_pool(layers, i + 1) => Some(Step::Conv { conv: i, pool: Some(i + 1) }),
                LayerKind::Conv => match layers.get(i + 1) {
                    Some(bn)
                        if matches!(bn.kind, LayerKind::BatchNorm { .. })
                            && train
                            && fast
                            && !layer.frozen
                            && !bn.frozen =>
                    {
                        let pool = is_pool(layers, i + 2).then_some(i + 2);
                        Some(Step::ConvBatchNorm { conv: i, bn: i + 1, pool })
                    }
                    _ => Some(Step::Conv { conv: i, pool: None }),
                },
                LayerKind::MaxPool => Some(Step::MaxPool(i)),
                LayerKind::AvgPool => Some(Step::AvgPool(i)),
                LayerKind::GlobalAvgPool => Some(Step::GlobalAvgPool(i)),
                LayerKind::BatchNorm { rank } => Some(batch_norm_step(layers, i, rank, train, fast)),
                LayerKind::Dropout(rate) if train && rate > 0.0 => {
                    let dense_next = plain_dense(layers, i + 1)
                        || (layers.get(i + 1).is_some_and(|l| l.kind == LayerKind::Flatten)
                            && plain_dense(layers, i + 2));
                    if fast && dense_next {
                        dropout = Some(i);
                        None
                    } else {
                        Some(Step::Dropout(i))
                    }
                }
                // A dropout outside training (or of rate 0) does nothing.
                LayerKind::Dropout(_) => None,
                LayerKind::Flatten if fast && plain_dense(layers, i + 1) => {
                    flatten = Some(i);
                    None
                }
                LayerKind::Flatten => Some(Step::Flatten(i)),
                LayerKind::Dense if layer.adapted => Some(Step::DenseAdapted(i)),
                LayerKind::Dense => Some(Step::Dense { dense: i, dropout: dropout.take(), flatten: flatten.take() }),
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

/// The step of the batch norm at `i` (with an input of `rank`) when no convolution took it.
fn batch_norm_step(layers: &[PlanLayer], i: usize, rank: usize, train: bool, fast: bool) -> Step {
    let frozen = layers[i].frozen;
    let (mode, pool) = match (train, frozen, fast) {
        (true, false, true) => (BatchNormMode::Batch, (rank == 4 && is_pool(layers, i + 1)).then_some(i + 1)),
        // A frozen batch norm runs in inference mode (as in Keras): moving statistics neither
        // used from the batch nor updated.
        (_, _, true) => (BatchNormMode::Fixed, None),
        (true, true, false) => (BatchNormMode::Frozen, None),
        _ => (BatchNormMode::Candle, None),
    };
    Step::BatchNorm { bn: i, mode, pool }
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
    use LayerKind::*;

    fn layers(kinds: &[LayerKind]) -> Vec<PlanLayer> {
        kinds.iter().map(|&kind| PlanLayer { kind, frozen: false, adapted: false }).collect()
    }

    fn text(layers: &[PlanLayer], train: bool, fast: bool) -> String {
        Plan::build(layers, train, fast).to_string().replace('\n', " | ")
    }

    #[test]
    fn the_rules_fuse_what_the_table_says() {
        // conv bn pool conv pool dropout dense dropout out
        let l = layers(&[
            Conv,
            BatchNorm { rank: 4 },
            MaxPool,
            Conv,
            MaxPool,
            Dropout(0.25),
            Flatten,
            Dense,
            Dropout(0.5),
            Dense,
        ]);
        assert_eq!(
            text(&l, true, true),
            "1+2+3 conv2d_relu_batch_norm_train | 4+5 conv2d_relu_pool | 6+7+8 dropout_linear | 9+10 dropout_linear"
        );
        assert_eq!(
            text(&l, false, true),
            "1 conv2d | 2 batch_norm_fixed | 3 max_pool2d | 4+5 conv2d_relu_pool | 7+8 linear | 10 linear"
        );
        assert_eq!(
            text(&l, true, false),
            "1 conv2d | 2 batch_norm (candle) | 3 max_pool2d | 4+5 conv2d_relu_pool | 6 dropout | 7 flatten \
             | 8 linear | 9 dropout | 10 linear"
        );
    }

    #[test]
    fn frozen_and_adapted_layers_change_the_plan() {
        let mut l = layers(&[Conv, BatchNorm { rank: 4 }, MaxPool, Flatten, Dense, Dropout(0.5), Dense]);
        l[1].frozen = true;
        assert_eq!(
            text(&l, true, true),
            "1 conv2d | 2 batch_norm_fixed | 3 max_pool2d | 4+5 linear | 6+7 dropout_linear"
        );
        assert_eq!(
            text(&l, true, false),
            "1 conv2d | 2 batch_norm (candle, frozen) | 3 max_pool2d | 4 flatten | 5 linear | 6 dropout | 7 linear"
        );
        l[1].frozen = false;
        l[4].adapted = true;
        assert_eq!(
            text(&l, true, true),
            "1+2+3 conv2d_relu_batch_norm_train | 4 flatten | 5 linear + lora | 6+7 dropout_linear"
        );
        // A batch norm after a dense layer (2-d) is never pooled; a batch norm after a pool
        // takes the next pool.
        let l = layers(&[Conv, MaxPool, BatchNorm { rank: 4 }, MaxPool, Flatten, Dense, BatchNorm { rank: 2 }, Dense]);
        assert_eq!(
            text(&l, true, true),
            "1+2 conv2d_relu_pool | 3+4 batch_norm_pool_train | 5+6 linear | 7 batch_norm_train | 8 linear"
        );
    }

    #[test]
    fn every_layer_runs_once_in_order() {
        let l = layers(&[Conv, BatchNorm { rank: 4 }, BatchNorm { rank: 4 }, MaxPool, AvgPool, GlobalAvgPool, Dense]);
        for train in [false, true] {
            for fast in [false, true] {
                let plan = Plan::build(&l, train, fast);
                let run: Vec<usize> = plan.steps.iter().flat_map(Step::layers).collect();
                let mut sorted = run.clone();
                sorted.sort_unstable();
                assert_eq!(run, sorted, "{plan}");
                assert_eq!(run, (0..l.len()).collect::<Vec<_>>(), "{plan}");
            }
        }
    }
}
