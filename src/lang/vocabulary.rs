//! The words Keras and PyTorch users type, each answered with the mnistlab statement that does
//! the same: the one table the parser reads when a line does not parse, before it guesses from
//! spelling, and that `help WORD` reads for a word that is no statement.
//!
//! A word is matched by what a user types, case-insensitively: `epochs 5`, `batch_size=32`,
//! `Dense(128)`, `model.fit(x, y, epochs=5)`, `torch.save(model, "m.pt")`. A dotted name also
//! matches by its last part (`tf.keras.layers.Dense` as `dense`, `net.fit` as `fit`), so the
//! table names each idea once rather than every module path to it.

/// Where in a line a [`Word`] means what its entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// At the start of the line (or after `name =`): where a statement belongs.
    Start,
    /// After one of these statement keywords.
    In(&'static [&'static str]),
    /// Anywhere in the line.
    Anywhere,
}

/// What mnistlab offers for a [`Word`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A whole statement; `{N}` stands for the number typed with the word, `{S}` for its
    /// first quoted text, `{next}` for the word after it.
    Line(&'static str),
    /// The same line with the word (and its value) replaced by this text (`{N}` as above).
    Replace(&'static str),
    /// The same line without the word: mnistlab does it already.
    Drop,
    /// A command of the REPL, not a statement (`:quit`).
    Repl(&'static str),
}

/// Which number typed with the word fills `{N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The first number: `epochs 5`, `Dense(128)`, `lr=0.01`.
    First,
    /// The second number in the parentheses: PyTorch's `nn.Conv2d(1, 32, 3)` names its input
    /// channels first.
    Second,
    /// The number after one of these keys inside the parentheses: `model.fit(x, y, epochs=5)`.
    Key(&'static [&'static str]),
}

/// One word of Keras or PyTorch, and what mnistlab does instead.
#[derive(Debug, Clone, Copy)]
pub struct Word {
    /// How it is typed, lowercase: `epochs`, `batch_size`, `model.fit`, `torch.save`.
    pub typed: &'static [&'static str],
    /// Where it means this.
    pub place: Place,
    /// What mnistlab does instead, as a clause: "mnistlab gives the number of epochs to `fit`".
    pub means: &'static str,
    /// The statement that does it.
    pub answer: Answer,
    /// Which number fills `{N}`.
    pub pick: Pick,
    /// What fills `{N}` when no number was typed.
    pub default: &'static str,
}

const fn word(typed: &'static [&'static str], place: Place, means: &'static str, answer: Answer) -> Word {
    Word { typed, place, means, answer, pick: Pick::First, default: "" }
}

impl Word {
    const fn n(self, default: &'static str) -> Word {
        Word { default, ..self }
    }
    const fn pick(self, pick: Pick) -> Word {
        Word { pick, ..self }
    }
}

use Answer::{Drop, Line, Repl, Replace};
use Place::{Anywhere, In, Start};

const MODEL: &[&str] = &["model"];
const TUNE_MODEL: &[&str] = &["model", "tune"];

/// The table: the first entry whose word and place match answers.
pub const WORDS: &[Word] = &[
    // Training.
    word(&["epochs", "epoch", "num_epochs", "n_epochs", "nb_epoch", "max_epochs"], Start, "mnistlab gives the number of epochs to `fit`", Line("fit {N}")).n("10"),
    word(&["epochs", "epoch", "num_epochs"], In(&["fit"]), "`fit` takes the number of epochs alone", Replace("{N}")).n("10"),
    word(&["fit", "fit_generator", "train", "train_model", "trainer.fit", "train_loop"], Start, "`fit N` trains the model on the train split for N epochs", Line("fit {N}")).pick(Pick::Key(&["epochs", "max_epochs", "num_epochs"])).n("10"),
    word(&["range", "zero_grad", "backward", "optimizer.step", "training_step", "train_one_epoch"], Anywhere, "`fit N` runs the whole training loop (batches, loss, backward pass, optimizer step) for N epochs", Line("fit {N}")).n("10"),
    word(&["batch_size", "batchsize", "bs", "batch-size"], Start, "the batch size is a statement of its own", Line("batch {N}")).n("32"),
    word(&["batch_size", "batchsize", "bs"], In(&["fit", "evaluate"]), "the batch size is a statement of its own, run before `fit`", Line("batch {N}")).n("32"),
    word(&["size"], In(&["batch"]), "`batch` takes the size alone", Drop),
    word(&["lr", "learning_rate", "learningrate", "learning-rate"], Start, "the learning rate is set with the optimizer", Line("optimizer adam lr {N}")).n("0.001"),
    word(&["learning_rate", "learningrate", "learning-rate"], In(&["optimizer"]), "mnistlab calls the learning rate `lr`", Replace("lr {N}")).n("0.001"),
    word(&["learning_rate"], In(&["tune"]), "mnistlab calls the learning rate `lr`", Replace("lr {N}")).n("1e-4..1e-2"),
    word(&["weight_decay", "wd"], In(&["optimizer"]), "mnistlab calls weight decay `decay` (AdamW's)", Replace("decay {N}")).n("0.01"),
    word(&["compile"], Anywhere, "there is nothing to compile: the optimizer (default adam) and the loss (cross-entropy) are statements of their own, then `fit`", Line("optimizer adam")),
    word(&["evaluate", "test", "model.eval", "eval", "no_grad"], Start, "`evaluate` measures the model on a split (default test)", Line("evaluate test")),
    word(&["x_test", "test_loader", "testloader", "test_ds", "test_dataset", "x_val", "val_loader"], In(&["evaluate", "fit"]), "mnistlab names the splits `train`, `val` and `test`", Line("evaluate test")),
    word(&["summary", "count_params", "parameters", "torchsummary", "torchinfo"], Start, "`summary` prints the layers, their shapes and parameter counts", Line("summary")),
    word(&["predict", "predict_classes"], Start, "`predict PATH` classifies a picture of a digit or a folder of them", Line("predict {S}")),
    word(&["save", "save_weights", "save_model", "torch.save", "saved_model.save", "state_dict"], Start, "`save model PATH` writes the model's spec and weights", Line("save model {S}")),
    word(&["load_model", "load_weights", "torch.load", "load_state_dict"], Anywhere, "`load model PATH` reads a model written by `save model`", Line("load model {S}")),
    word(&["earlystopping", "early_stopping", "patience"], Start, "early stopping is `fit N patience P`", Line("fit 20 patience {N}")).n("3"),
    word(&["modelcheckpoint", "checkpoint"], Start, "`fit N checkpoint DIR` writes a checkpoint after every epoch", Line("fit 10 checkpoint {S}")),
    word(&["tensorboard", "summarywriter", "callbacks.tensorboard"], Start, "`log tensorboard DIR` writes a TensorBoard run for every `fit`", Line("log tensorboard {S}")),
    word(&["validation_split", "validation_data", "val_split"], Anywhere, "the validation split is made once, by `split`", Line("split val 10")),
    word(&["train_test_split", "random_split", "validation_split"], Start, "`split` makes the train, validation and test splits (stratified by class)", Line("split 70/15/15")),
    word(&["shuffle"], Anywhere, "`fit` shuffles the train split every epoch", Line("fit {N}")).n("10"),
    word(&["verbose", "steps_per_epoch"], In(&["fit"]), "mnistlab prints a line per epoch and a bar during it", Drop),
    // Optimizers, schedules and losses.
    word(&["adam", "optim.adam", "optimizers.adam"], Start, "the optimizer is chosen with `optimizer`", Line("optimizer adam lr {N}")).pick(Pick::Key(&["lr", "learning_rate"])).n("0.001"),
    word(&["adamw", "optim.adamw"], Start, "the optimizer is chosen with `optimizer`", Line("optimizer adamw lr {N}")).pick(Pick::Key(&["lr", "learning_rate"])).n("0.001"),
    word(&["sgd", "optim.sgd"], Start, "the optimizer is chosen with `optimizer`", Line("optimizer sgd lr {N}")).pick(Pick::Key(&["lr", "learning_rate"])).n("0.01"),
    word(&["adam"], In(&["optimizer"]), "mnistlab writes the optimizer's settings after its name, no parentheses", Replace("adam lr {N}")).pick(Pick::Key(&["lr", "learning_rate"])).n("0.001"),
    word(&["adamw"], In(&["optimizer"]), "mnistlab writes the optimizer's settings after its name, no parentheses", Replace("adamw lr {N}")).pick(Pick::Key(&["lr", "learning_rate"])).n("0.001"),
    word(&["sgd"], In(&["optimizer"]), "mnistlab writes the optimizer's settings after its name, no parentheses", Replace("sgd lr {N}")).pick(Pick::Key(&["lr", "learning_rate"])).n("0.01"),
    word(&["rmsprop", "adagrad", "adadelta", "nadam", "adamax", "lion", "radam", "lamb"], In(&["optimizer"]), "mnistlab offers adam, adamw and sgd", Replace("adam")),
    word(&["rmsprop", "adagrad", "adadelta", "nadam", "adamax"], Start, "mnistlab offers the optimizers adam, adamw and sgd", Line("optimizer adam")),
    word(&["onecyclelr", "one_cycle", "one-cycle", "1cycle", "fit_one_cycle"], Start, "the learning-rate schedule is a statement of its own", Line("schedule onecycle")),
    word(&["cosineannealinglr", "cosinedecay", "cosine_decay", "cosineannealing"], Start, "the learning-rate schedule is a statement of its own", Line("schedule cosine")),
    word(&["steplr", "exponentialdecay", "reducelronplateau", "lr_scheduler", "learningratescheduler", "scheduler"], Start, "the learning-rate schedule is a statement of its own: constant, onecycle, cosine or step", Line("schedule step every {N} factor 0.5")).pick(Pick::Key(&["step_size"])).n("3"),
    word(&["onecyclelr", "one_cycle", "one-cycle", "1cycle"], In(&["schedule"]), "mnistlab calls the one-cycle schedule `onecycle`", Replace("onecycle")),
    word(&["cosineannealinglr", "cosineannealing", "cosinedecay", "cos"], In(&["schedule"]), "mnistlab calls cosine annealing `cosine`", Replace("cosine")),
    word(&["steplr", "exponential", "exponentialdecay"], In(&["schedule"]), "mnistlab's stepped schedule is `step [every N] [factor F]`", Replace("step")),
    word(&["step_size"], In(&["schedule"]), "mnistlab calls the step size `every`", Replace("every {N}")).n("3"),
    word(&["gamma"], In(&["schedule"]), "mnistlab calls the step's factor `factor`", Replace("factor {N}")).n("0.5"),
    word(&["crossentropyloss", "categorical_crossentropy", "sparse_categorical_crossentropy", "cross_entropy", "nll_loss", "nllloss", "sparsecategoricalcrossentropy", "categoricalcrossentropy", "ce"], In(&["loss"]), "mnistlab's loss is `crossentropy` (over the classes, from logits)", Replace("crossentropy")),
    word(&["crossentropyloss", "categorical_crossentropy", "sparse_categorical_crossentropy", "cross_entropy", "nll_loss", "criterion"], Start, "the loss is a statement of its own", Line("loss crossentropy")),
    word(&["use_ema", "ema_momentum", "averagedmodel", "swa_utils.averagedmodel", "exponentialmovingaverage", "get_ema_multi_avg_fn"], Anywhere, "a moving average of the weights is `ema D`: validation, the kept epoch and saved models use it", Line("ema 0.999")),
    word(&["votingclassifier", "averaging", "model_ensemble", "ensembles"], Start, "`ensemble fit K N` trains K models and classifies with the mean of their probabilities (`ensemble add` collects models you trained)", Line("ensemble fit 3 10")),
    word(&["label_smoothing"], Anywhere, "label smoothing is `loss crossentropy smoothing S`", Line("loss crossentropy smoothing {N}")).n("0.1"),
    word(&["lr_find", "lrfinder", "lr_finder", "find_lr"], Start, "the learning-rate range test is `find lr`", Line("find lr")),
    // The model.
    word(&["activation", "layers.activation"], In(MODEL), "an activation is a layer word of its own: relu, tanh or silu (convN and denseN apply ReLU already)", Drop),
    word(&["nn.relu", "f.relu"], In(MODEL), "ReLU as a layer of its own is `relu` (convN and denseN apply it already)", Replace("relu")),
    word(&["flatten", "nn.flatten"], In(MODEL), "flatten is implied before the first denseN", Drop),
    word(&["softmax", "log_softmax", "logsoftmax"], In(MODEL), "the output layer and its softmax follow from the classes", Drop),
    word(&["input", "inputlayer", "input_shape", "reshape", "keras.input"], In(MODEL), "the input's shape comes from the data", Drop),
    word(&["gelu", "elu", "selu", "leakyrelu", "leaky_relu", "mish", "nn.silu"], In(MODEL), "mnistlab's activation layers are relu, tanh and silu", Replace("silu")),
    word(&["sigmoid", "hard_sigmoid", "nn.tanh"], In(MODEL), "mnistlab's activation layers are relu, tanh and silu", Replace("tanh")),
    word(&["nn.linear"], In(TUNE_MODEL), "a dense layer is one word, its width after it: `dense128` (ReLU built in)", Replace("dense{N}")).pick(Pick::Second).n("128"),
    word(&["dense", "linear"], In(TUNE_MODEL), "a dense layer is one word, its width after it: `dense128` (ReLU built in)", Replace("dense{N}")).n("128"),
    word(&["conv2d", "conv", "convolution2d"], In(TUNE_MODEL), "a convolution is one word, its filters after it: `conv32` (3×3, ReLU; `conv32k5` for 5×5)", Replace("conv{N}")).n("32"),
    word(&["nn.conv2d"], In(TUNE_MODEL), "a convolution is one word, its filters after it: `conv32` (3×3, ReLU; `conv32k5` for 5×5)", Replace("conv{N}")).pick(Pick::Second).n("32"),
    word(&["maxpooling2d", "maxpool2d", "maxpool", "max_pool2d", "maxpooling", "pooling", "max_pool"], In(TUNE_MODEL), "mnistlab's 2×2 max pooling is `pool`", Replace("pool")),
    word(&["averagepooling2d", "avgpool2d", "avg_pool2d", "averagepooling"], In(TUNE_MODEL), "mnistlab's 2×2 average pooling is `avgpool`", Replace("avgpool")),
    word(&["batchnormalization", "batchnorm2d", "batchnorm1d", "batchnorm", "batch_norm", "batchnormalisation"], In(TUNE_MODEL), "mnistlab's batch normalization is `bn`", Replace("bn")),
    word(&["globalaveragepooling2d", "adaptiveavgpool2d", "globalavgpool2d", "global_average_pooling"], In(TUNE_MODEL), "mnistlab's global average pooling is `gap`", Replace("gap")),
    word(&["dropout", "nn.dropout", "dropout2d"], In(TUNE_MODEL), "dropout is `dropout P`", Replace("dropout {N}")).n("0.5"),
    word(&["sequential", "nn.sequential", "keras.sequential", "add", "nn.module"], Anywhere, "a network is one `model` statement listing its layers (ReLU, flatten and the output layer built in)", Line("model conv32 pool conv64 pool dense128")),
    word(&["nn.linear"], Start, "layers are listed in one `model` statement; the output layer follows from the classes", Line("model dense{N}")).pick(Pick::Second).n("128"),
    word(&["dense", "linear", "layers.dense"], Start, "layers are listed in one `model` statement; the output layer follows from the classes", Line("model dense{N}")).n("128"),
    word(&["conv2d", "conv", "layers.conv2d"], Start, "layers are listed in one `model` statement: `conv32` is 32 filters of 3×3 with ReLU", Line("model conv{N} pool dense128")).n("32"),
    word(&["nn.conv2d"], Start, "layers are listed in one `model` statement: `conv32` is 32 filters of 3×3 with ReLU", Line("model conv{N} pool dense128")).pick(Pick::Second).n("32"),
    word(&["maxpooling2d", "maxpool2d", "maxpool", "pool", "pooling"], Start, "layers are listed in one `model` statement; `pool` is 2×2 max pooling", Line("model conv32 pool dense128")),
    word(&["batchnormalization", "batchnorm2d", "batchnorm"], Start, "layers are listed in one `model` statement; `bn` is batch normalization", Line("model conv32 bn pool dense128")),
    word(&["globalaveragepooling2d", "adaptiveavgpool2d"], Start, "layers are listed in one `model` statement; `gap` is global average pooling", Line("model conv32 conv64 gap")),
    word(&["dropout", "dropout2d"], Start, "`dropout P` is a layer of the `model` statement", Line("model conv32 pool dropout {N} dense128")).n("0.5"),
    word(&["relu", "activation", "flatten", "softmax"], Start, "flatten and the output softmax are built into `model`, and convN and denseN apply ReLU (relu, tanh and silu are layers for those written `norelu`)", Line("model conv32 pool dense128")),
    word(&["resnet", "resnet18", "vgg", "vgg16", "mobilenet", "efficientnet", "alexnet"], In(MODEL), "mnistlab's presets are seed-small, seed-cnn, lenet5, strong, an-m5 and deotte", Replace("strong")),
    word(&["lenet", "le-net", "lenet-5", "lenet_5"], In(MODEL), "the preset is called `lenet5`", Replace("lenet5")),
    // The data.
    word(&["load_data", "mnist.load_data", "datasets.mnist", "torchvision.datasets.mnist", "tfds.load"], Anywhere, "`load mnist` fetches, verifies and caches MNIST", Line("load mnist")),
    word(&["fashion_mnist.load_data", "datasets.fashionmnist", "fashionmnist", "fashion_mnist"], Anywhere, "`load fashion-mnist` fetches, verifies and caches Fashion-MNIST", Line("load fashion-mnist")),
    word(&["fashionmnist", "fashion_mnist", "fashion", "fmnist"], In(&["load"]), "mnistlab names it `fashion-mnist`", Replace("fashion-mnist")),
    word(&["png", "jpg", "jpeg", "images", "image", "pictures", "imagefolder", "image_dataset_from_directory"], In(&["load"]), "a folder of your own PNG/JPEG pictures, one subfolder per class (as ImageFolder or image_dataset_from_directory), loads with `load folder DIR`; `predict PATH` classifies pictures with the model", Line("load folder {next}")),
    word(&["mnist.npz"], In(&["load"]), "Keras' mnist.npz is read with `load npz PATH`", Line("load npz {S}")),
    word(&["normalization", "rescaling", "transforms.normalize", "totensor", "transforms.totensor", "scale"], Start, "`normalize` scales pixels to 0..1 (`standardize` to mean 0, deviation 1)", Line("normalize")),
    word(&["/", "255", "255.0", "255.", "/255", "/255.0"], Anywhere, "`normalize` scales pixels to 0..1 (`standardize` to mean 0, deviation 1)", Line("normalize")),
    word(&["to_categorical", "one_hot", "one-hot", "onehotencoder"], Start, "`onehot` one-hot encodes the labels", Line("onehot")),
    word(&["imagedatagenerator", "randomrotation", "transforms.randomrotation", "randomaffine", "data_augmentation", "transforms.compose"], Start, "augmentation is `augment`, drawn afresh for every batch of the train split", Line("augment rotate {N} shift 0.1")).n("10"),
    word(&["randomrotation", "transforms.randomrotation", "rotation"], In(&["augment"]), "mnistlab's random rotation is `rotate DEG`", Replace("rotate {N}")).n("10"),
    word(&["imshow", "plt.imshow", "show_batch", "make_grid"], Start, "`show samples N` draws a grid of images", Line("show samples {N}")).n("16"),
    word(&["shape", "describe", "len", "x_train.shape"], Start, "`info` prints the splits, their shapes, classes and pixel statistics", Line("info")),
    word(&["confusion_matrix", "confusionmatrixdisplay"], Anywhere, "`plot confusion` draws the confusion matrix of the last `evaluate`", Line("plot confusion")),
    word(&["classification_report"], Anywhere, "`evaluate` prints the loss, accuracy and per-class accuracy", Line("evaluate test")),
    word(&["plt.plot", "history.history", "plt.show", "matplotlib"], Anywhere, "`plot history` draws the accuracy and loss per epoch", Line("plot history")),
    word(&["manual_seed", "set_seed", "random.seed", "random_state", "np.random.seed", "seed_everything"], Anywhere, "`seed S` seeds every random draw of the session", Line("seed {N}")).n("42"),
    word(&["set_num_threads", "num_workers", "n_jobs"], Anywhere, "`threads N` sets the worker threads", Line("threads {N}")).n("4"),
    // Devices.
    word(&["gpu", "cuda:0", "mps", "gpu:0", "cuda0", "nvidia"], In(&["device"]), "mnistlab calls the GPU `cuda`", Replace("cuda")),
    word(&["is_available", "device_count", "list_physical_devices"], Anywhere, "`device cuda` computes on the GPU (in a build with `--features cuda`)", Line("device cuda")),
    word(&["gpu", "cuda", "to", "torch.device", "model.cuda", "model.to", "use_gpu"], Start, "the device is chosen with `device` (`cuda` is the GPU)", Line("device cuda")),
    word(&["mixed_precision", "set_global_policy", "mixed_bfloat16", "autocast", "torch.autocast", "bfloat16", "bf16", "amp", "half", "fp16", "mixed_float16"], Anywhere, "mixed precision is `precision bf16` (bf16 products, f32 sums and weights)", Line("precision bf16")),
    // Export and fine-tuning.
    word(&["torch.onnx.export", "tf2onnx", "onnx", "to_onnx"], Anywhere, "`export onnx PATH` writes an ONNX file", Line("export onnx {S}")),
    word(&["trainable", "requires_grad", "requires_grad_"], Anywhere, "layers are frozen with `freeze` (and `unfreeze`)", Line("freeze conv")),
    word(&["lora", "loraconfig", "peft", "get_peft_model"], Start, "LoRA adapters are added with `adapt lora rank R`", Line("adapt lora rank {N}")).pick(Pick::Key(&["r", "rank"])).n("8"),
    word(&["optuna", "keras_tuner", "randomsearch", "gridsearchcv", "kerastuner", "hyperband"], Anywhere, "`tune` runs a random search over the settings", Line("tune trials 16")),
    // The session itself.
    word(&["import", "from", "pip", "pip3", "conda", "install", "require", "library"], Start, "every statement is built in: there is nothing to import or install (`help` lists them)", Line("help")),
    word(&["exit", "quit", "q", ":q", "bye", "logout", ":exit", "exit()", "quit()", ":wq"], Start, "the REPL ends with `:quit` or Ctrl-D (a script ends after its last line)", Repl(":quit")),
    word(&["help", "dir"], Start, "`help` lists the statements, `help NAME` explains one", Line("help")),
    word(&["images", "image", "pictures", "examples", "digits", "data", "batch"], In(&["show"]), "a grid of images is `show samples N`", Replace("samples {N}")).n("16"),
    word(&["?", "--help", "-h", "man", "commands", "usage", "h"], Start, "`help` lists the statements, `help NAME` explains one", Line("help")),
];

/// A word of a line, with what was typed with it: `epochs 5`, `lr=0.01`, `Dense(128, …)`.
#[derive(Debug, Clone)]
struct Term<'a> {
    /// Byte range in the line.
    start: usize,
    end: usize,
    /// The name, lowercase, without the parenthesized arguments: `model.fit`, `dense`.
    head: String,
    /// The text inside its parentheses, if it was called.
    args: Option<&'a str>,
    /// A number after it (`epochs 5`) or after its `=` (`lr=0.01`).
    value: Option<&'a str>,
    /// Whether it is `name =` followed by an expression (a Python assignment).
    assigns: bool,
    /// Whether its value follows an `=`.
    equals: bool,
}

/// Splits `line` into [`Term`]s, Python's way enough to find the words this table knows.
fn terms(line: &str) -> Vec<Term<'_>> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_space = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_space(i);
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && !matches!(bytes[i], b'(' | b'=' | b')' | b',') {
            i += 1;
        }
        if i == start {
            // A lone bracket, comma or `=`: skip it.
            i += line[i..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let head = line[start..i].trim_start_matches(['!', '%']).trim_end_matches([';', ':', '.']).to_lowercase();
        let (mut args, mut value, mut assigns, mut equals, mut end) = (None, None, false, false, i);
        if bytes.get(i) == Some(&b'(') {
            let close = closing_paren(line, i).unwrap_or(line.len());
            args = Some(&line[i + 1..close]);
            end = (close + 1).min(line.len());
        } else {
            let after = skip_space(i);
            if bytes.get(after) == Some(&b'=') && bytes.get(after + 1) != Some(&b'=') {
                let v_start = skip_space(after + 1);
                let v_end =
                    line[v_start..].find(|c: char| c.is_whitespace() || c == ',').map_or(line.len(), |e| v_start + e);
                let v = &line[v_start..v_end];
                if is_number(v) || v.contains("..") {
                    value = Some(v);
                    equals = true;
                    end = v_end;
                } else {
                    assigns = true;
                    end = after + 1;
                }
            } else {
                let v_end = line[after..].find(char::is_whitespace).map_or(line.len(), |e| after + e);
                let v = &line[after..v_end];
                if !v.is_empty() && (is_number(v) || v.contains("..")) {
                    value = Some(v);
                    end = v_end;
                }
            }
        }
        out.push(Term { start, end, head, args, value, assigns, equals });
        i = end;
    }
    out
}

/// The byte index of the `)` that closes the `(` at `open`, skipping quoted text.
fn closing_paren(line: &str, open: usize) -> Option<usize> {
    let (mut depth, mut quote) = (0usize, None);
    for (i, c) in line.char_indices().skip_while(|&(i, _)| i < open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn is_number(s: &str) -> bool {
    matches!(super::combinators::number(s), Ok(("", _)))
}

/// The numbers in `text`, in order (a digit inside a name, as in `conv2d` or `x1`, is none).
fn numbers(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        // A digit inside a name (`conv2d`, `x1`) or an index (`x[0]`) is no number.
        let starts = (c.is_ascii_digit() || c == '.' || c == '-')
            && !prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '.' || p == '[');
        if starts {
            if let Ok((rest, _)) = super::combinators::number(&text[i..]) {
                let len = text.len() - i - rest.len();
                out.push(&text[i..i + len]);
                prev = text[..i + len].chars().last();
                i += len;
                continue;
            }
        }
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

/// The first quoted text in `text` (`'mnist.keras'` or `"m.pt"`), without its quotes.
fn first_quoted(text: &str) -> Option<&str> {
    let start = text.find(['"', '\''])?;
    let quote = text[start..].chars().next()?;
    let end = text[start + 1..].find(quote)?;
    Some(&text[start + 1..start + 1 + end])
}

impl Word {
    /// Whether `head` is this word: the whole name, or (for a dotted name) its last part.
    fn matches(&self, head: &str) -> bool {
        let last = head.rsplit('.').next().unwrap_or(head);
        self.typed.iter().any(|&t| t == head || (!t.contains('.') && t == last && head.contains('.')))
    }

    /// The number typed with `term` that fills `{N}`.
    fn number<'a>(&self, term: &Term<'a>) -> Option<&'a str> {
        match (self.pick, term.args) {
            (Pick::First, None) => term.value,
            (Pick::First, Some(args)) => numbers(args).first().copied(),
            (Pick::Second, Some(args)) => numbers(args).get(1).copied(),
            (Pick::Key(keys), Some(args)) => {
                let lower = args.to_lowercase();
                keys.iter().find_map(|k| {
                    let at = lower.match_indices(k).find(|(i, _)| {
                        let before = lower[..*i].chars().last();
                        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                            && lower[i + k.len()..].trim_start().starts_with('=')
                    })?;
                    let after = &args[at.0 + k.len()..];
                    numbers(after).first().copied()
                })
            }
            (_, None) => term.value,
        }
    }

    /// `template` with `{N}`, `{S}` and `{next}` filled from `term` and the word after it.
    fn fill(&self, template: &str, term: &Term<'_>, next: Option<&str>) -> String {
        if template == "{N}" && self.number(term).is_none() {
            // `fit 5 epochs`: the word goes, the number stays where it was typed.
            return String::new();
        }
        let n = self.number(term).unwrap_or(self.default);
        // The first quoted text of a call (`torch.save(m, "m.pt")`), or the word after
        // (`load_model m.h5`).
        let s = match term.args {
            Some(args) => first_quoted(args),
            None => next.filter(|n| !n.starts_with(['"', '\''])),
        };
        let s = s.filter(|s| !s.is_empty() && !s.contains(char::is_whitespace));
        let s = s.unwrap_or(if template.starts_with("save") || template.starts_with("load") { "PATH" } else { "DIR" });
        let s = if template.starts_with("export") && s == "DIR" { "PATH" } else { s };
        template.replace("{N}", n).replace("{S}", s).replace("{next}", next.unwrap_or("DIR"))
    }
}

/// What the table says about a line that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// Byte offset in the line of the word it is about.
    pub at: usize,
    /// Byte offset in the line after what was typed with the word.
    pub end: usize,
    /// The words as typed: `epochs 5`.
    pub typed: String,
    /// What mnistlab does instead.
    pub means: String,
    /// The statement (or REPL command) that does it, when one can be given.
    pub answer: Option<String>,
}

/// The statement keyword the line starts with, lowercase.
fn first_word(line: &str) -> String {
    line.split(|c: char| c.is_whitespace() || c == '(' || c == '.' || c == '=').next().unwrap_or("").to_lowercase()
}

/// The entry of the table for `term`, the `index`th term of a line starting with `keyword`.
fn entry_for(term: &Term<'_>, at_start: bool, keyword: &str) -> Option<&'static Word> {
    // A statement's own keyword is the statement's to explain, unless it is written as a
    // call (`fit(x, y)`), which no statement is.
    if term.args.is_none() && super::docs::lookup(&term.head).is_some() {
        return None;
    }
    // A word the statement takes itself (`optimizer adam`) is the table's only written as a
    // call (`optimizer Adam(lr=0.01)`).
    let own_word =
        term.args.is_none() && super::docs::lookup(keyword).is_some_and(|d| d.words.contains(&term.head.as_str()));
    let fits = |w: &&Word| match w.place {
        Place::Start => at_start,
        Place::In(keywords) => !at_start && !own_word && keywords.contains(&keyword),
        Place::Anywhere => true,
    };
    // A whole name first (`torch.save`), then a dotted name's last part (`net.fit`).
    WORDS
        .iter()
        .filter(fits)
        .find(|w| w.typed.contains(&term.head.as_str()))
        .or_else(|| WORDS.iter().filter(fits).find(|w| w.matches(&term.head)))
}

/// Whether the table knows `word` anywhere (then no spelling guess should stand for it).
pub fn knows(word: &str) -> bool {
    let word = word.to_lowercase();
    WORDS.iter().any(|w| w.matches(&word))
}

/// The entries of the table for `word` (for `help WORD`).
pub fn lookup(word: &str) -> Vec<&'static Word> {
    let word = word.to_lowercase();
    WORDS.iter().filter(|w| w.matches(&word)).collect()
}

/// What the table says about `line`, which failed to parse at byte `error_at`: the term there
/// first, then those after it. `parses` tells whether a line parses,
/// so that an answer that edits the line is offered only when the edited line is valid.
pub fn explain(line: &str, error_at: usize, parses: &dyn Fn(&str) -> bool) -> Option<Hint> {
    let terms = terms(line);
    let keyword = first_word(line);
    // A statement's place: the line's start, after `name =`, or after `set`/`let`.
    let starts: Vec<bool> = (0..terms.len())
        .map(|i| {
            i == 0
                || terms[..i].last().is_some_and(|t| {
                    t.assigns || (i == 1 && matches!(t.head.as_str(), "set" | "let" | "var" | "config"))
                })
        })
        .collect();
    // The term the parser stopped in, then those after it: a word before it parsed where it
    // stands, so the table has nothing to say about it.
    let containing = terms.iter().position(|t| t.start <= error_at && error_at < t.end.max(t.start + 1));
    let mut order: Vec<usize> = containing.into_iter().collect();
    order.extend((0..terms.len()).filter(|&i| terms[i].start > error_at));
    let mut seen = Vec::new();
    for i in order {
        if seen.contains(&i) {
            continue;
        }
        seen.push(i);
        let term = &terms[i];
        if let (Some(args), "print" | "display" | "len") = (term.args, term.head.as_str()) {
            // Python's `print(model.summary())`: what is printed is what the learner wants.
            if let Some(inner) = explain(args, 0, parses) {
                let typed = line[term.start..term.end].trim().to_string();
                return Some(Hint { at: term.start, end: term.end, typed, ..inner });
            }
        }
        if term.assigns {
            // `scheduler = StepLR(...)`: a variable's name says nothing; what it is set to does.
            continue;
        }
        let Some(entry) = entry_for(term, starts[i], &keyword) else { continue };
        // The word after it, past command-line flags (`tensorboard --logdir runs` → `runs`).
        let next = terms[i + 1..].iter().map(|t| &line[t.start..t.end]).find(|w| !w.starts_with('-'));
        let answer = match entry.answer {
            Answer::Line(template) => Some(entry.fill(template, term, next)),
            Answer::Repl(command) => Some(command.to_string()),
            Answer::Replace(_) | Answer::Drop => {
                let edited = edit(line, parses);
                edited.filter(|e| parses(e))
            }
        };
        let typed = line[term.start..term.end].trim().to_string();
        return Some(Hint { at: term.start, end: term.end, typed, means: entry.means.into(), answer });
    }
    if terms.first().is_some_and(|t| t.args.is_none() && super::docs::lookup(&t.head).is_none()) {
        // `conv32 pool dense128`: layers without their statement.
        let with_model = format!("model {line}");
        if parses(&with_model) {
            let means = "layers are listed after `model`, in one statement".to_string();
            return Some(Hint { at: 0, end: line.len(), typed: line.to_string(), means, answer: Some(with_model) });
        }
    }
    None
}

/// `line` with every word the table can replace in place replaced (`Dense(128)` by
/// `dense128`, `relu` dropped, …) and `key=value` written `key value`, when that parses.
fn edit(line: &str, parses: &dyn Fn(&str) -> bool) -> Option<String> {
    let keyword = first_word(line);
    let terms = terms(line);
    let mut out = String::new();
    let mut last = 0;
    for (i, term) in terms.iter().enumerate() {
        let Some(entry) = entry_for(term, i == 0, &keyword) else { continue };
        let replacement = match entry.answer {
            Answer::Replace(template) => entry.fill(template, term, None),
            // `batch size 32` keeps its 32; `verbose=1` goes whole.
            Answer::Drop => term.value.filter(|_| !term.equals).unwrap_or_default().to_string(),
            _ => continue,
        };
        out.push_str(&line[last..term.start]);
        out.push_str(&replacement);
        last = term.end;
    }
    out.push_str(&line[last..]);
    let edited = without_equals(&out);
    let edited = edited.split_whitespace().collect::<Vec<_>>().join(" ");
    parses(&edited).then_some(edited)
}

/// `line` with `key=value` (and `key = value`) written `key value`, outside quotes.
pub fn without_equals(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_quotes = false;
    for c in line.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                out.push(c);
            }
            '=' if !in_quotes => out.push(' '),
            _ => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_read_calls_values_and_assignments() {
        let t = terms("history = model.fit(x, y, batch_size=128, epochs=12) lr=0.01 epochs 5");
        let heads: Vec<&str> = t.iter().map(|t| t.head.as_str()).collect();
        assert_eq!(heads, ["history", "model.fit", "lr", "epochs"]);
        assert!(t[0].assigns);
        assert_eq!(t[1].args, Some("x, y, batch_size=128, epochs=12"));
        assert_eq!((t[2].value, t[3].value), (Some("0.01"), Some("5")));
        let fit = WORDS.iter().find(|w| w.typed.contains(&"fit")).unwrap();
        assert_eq!(fit.number(&t[1]), Some("12"), "the number after `epochs=`, not the first");
        assert_eq!(numbers("Conv2D(32, (3, 3)), x1 -0.5 1e-3"), ["32", "3", "3", "-0.5", "1e-3"]);
    }

    #[test]
    fn every_word_is_lowercase_and_has_what_it_needs() {
        for w in WORDS {
            assert!(!w.typed.is_empty() && !w.means.is_empty());
            for t in w.typed {
                assert_eq!(*t, t.to_lowercase(), "{t}");
            }
            let template = match w.answer {
                Answer::Line(t) | Answer::Replace(t) => t,
                _ => "",
            };
            assert!(!template.contains("{N}") || !w.default.is_empty(), "`{}` needs a default number", w.typed[0]);
        }
    }
}
