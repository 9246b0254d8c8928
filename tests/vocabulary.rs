//! The Keras/PyTorch vocabulary: what a learner coming from Keras or PyTorch types is answered
//! with the mnistlab statement that does it, and never with a guess of another meaning.

use mnistlab::data::fetch::Named;
use mnistlab::lang::*;
use mnistlab::model::{Layer, Optimizer};

/// Each line, the statement its error must name, and words the error must not guess (the
/// spelling guesses that misled before the table).
const CASES: &[(&str, &str, &[&str])] = &[
    ("epochs 5", "fit 5", &[]),
    ("use_ema", "ema 0.999", &[]),
    ("AveragedModel(model)", "ema 0.999", &[]),
    ("VotingClassifier(estimators)", "ensemble fit 3 10", &[]),
    ("EPOCHS=5", "fit 5", &[]),
    ("num_epochs = 20", "fit 20", &[]),
    ("batch_size 32", "batch 32", &[]),
    ("batch_size=64", "batch 64", &[]),
    ("batch size 32", "batch 32", &[]),
    ("Dense(128)", "model dense128", &[]),
    ("dense 64", "model dense64", &[]),
    ("layers.Dense(10, activation='softmax')", "model dense10", &[]),
    ("Conv2D(32, (3,3), activation='relu')", "model conv32 pool dense128", &["conv"]),
    ("nn.Conv2d(1, 16, 3)", "model conv16 pool dense128", &[]),
    ("MaxPooling2D((2, 2))", "model conv32 pool dense128", &[]),
    ("dropout 0.5", "model conv32 pool dropout 0.5 dense128", &[]),
    ("relu", "model conv32 pool dense128", &["seed"]),
    ("learning_rate 0.01", "optimizer adam lr 0.01", &[]),
    ("lr 0.01", "optimizer adam lr 0.01", &["log"]),
    ("lr=3e-4", "optimizer adam lr 3e-4", &["log"]),
    ("model conv32 activation relu pool dense128", "model conv32 relu pool dense128", &[]),
    ("model conv32 norelu bn nn.ReLU pool dense128", "model conv32 norelu bn relu pool dense128", &[]),
    ("model conv32 gelu pool dense128", "model conv32 silu pool dense128", &[]),
    ("model conv32 pool flatten dense128 softmax", "model conv32 pool dense128", &[]),
    ("model Conv2D(32) MaxPooling2D Flatten Dense(128)", "model conv32 pool dense128", &[]),
    ("model conv32 BatchNormalization pool dense 128", "model conv32 bn pool dense128", &[]),
    ("model conv32 pool dense128 activation tanh", "model conv32 pool dense128 tanh", &[]),
    ("model lenet", "model lenet5", &[]),
    ("optimizer adam lr=0.001", "optimizer adam lr 0.001", &[]),
    ("optimizer sgd lr=0.1 momentum=0.9", "optimizer sgd lr 0.1 momentum 0.9", &[]),
    ("optimizer adam learning_rate=0.01", "optimizer adam lr 0.01", &[]),
    ("optimizer RMSprop", "optimizer adam", &[]),
    ("optimizer adamw weight_decay 0.05", "optimizer adamw decay 0.05", &[]),
    ("optim.Adam(model.parameters(), lr=0.01)", "optimizer adam lr 0.01", &[]),
    ("exit", ":quit", &["fit"]),
    ("quit", ":quit", &["fit"]),
    ("exit()", ":quit", &["fit"]),
    ("device gpu", "device cuda", &["cpu"]),
    ("device GPU", "device cuda", &["cpu"]),
    ("model.to('cuda')", "device cuda", &[]),
    ("compile", "optimizer adam", &["compare"]),
    (
        "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])",
        "optimizer adam",
        &["compare"],
    ),
    ("load png mydigits", "load folder mydigits", &["npz"]),
    ("tensorboard --logdir runs", "log tensorboard runs", &[]),
    ("load fashion_mnist", "load fashion-mnist", &[]),
    ("model.fit(x_train, y_train, batch_size=128, epochs=12)", "fit 12", &[]),
    ("history = model.fit(x, y, epochs=3, validation_split=0.1)", "fit 3", &[]),
    ("fit epochs=5", "fit 5", &[]),
    ("model.evaluate(x_test, y_test)", "evaluate test", &[]),
    ("model.summary()", "summary", &[]),
    ("print(model.summary())", "summary", &[]),
    ("import tensorflow as tf", "help", &[]),
    ("from tensorflow import keras", "help", &[]),
    ("pip install torch", "help", &[]),
    ("torch.save(model.state_dict(), 'mnist.pt')", "save model mnist.pt", &[]),
    ("model.save('mnist.keras')", "save model mnist.keras", &[]),
    ("model = keras.models.load_model('mnist.keras')", "load model mnist.keras", &[]),
    ("(x_train, y_train), (x_test, y_test) = mnist.load_data()", "load mnist", &[]),
    ("fashion_mnist.load_data()", "load fashion-mnist", &[]),
    ("model = Sequential()", "model conv32 pool conv64 pool dense128", &[]),
    ("criterion = nn.CrossEntropyLoss()", "loss crossentropy", &[]),
    ("loss sparse_categorical_crossentropy", "loss crossentropy", &[]),
    ("schedule OneCycleLR", "schedule onecycle", &[]),
    ("torch.manual_seed(0)", "seed 0", &[]),
    ("torch.onnx.export(model, x, 'mnist.onnx')", "export onnx mnist.onnx", &[]),
    ("EarlyStopping(patience=3)", "fit 20 patience 3", &[]),
    ("x_train = x_train / 255.0", "normalize", &[]),
    ("to_categorical(y_train, 10)", "onehot", &[]),
    ("train_test_split(x, y, test_size=0.2)", "split 70/15/15", &[]),
    ("optimizer Adam(lr=0.01)", "optimizer adam lr 0.01", &[]),
    ("augment RandomRotation(15)", "augment rotate 15", &[]),
    ("scheduler = StepLR(optimizer, step_size=5, gamma=0.1)", "schedule step every 5 factor 0.5", &[]),
    ("load_model mnist.h5", "load model mnist.h5", &[]),
    ("BATCH_SIZE = 128", "batch 128", &[]),
    ("model Dense(64) Dropout(0.2) Dense(10)", "model dense64 dropout 0.2 dense10", &[]),
    ("fit 5 validation_split=0.1", "split val 10", &[]),
    ("dataset = torchvision.datasets.MNIST(root='data', download=True)", "load mnist", &[]),
];

#[test]
fn keras_and_pytorch_words_name_the_statement_that_does_it() {
    let mut failures = Vec::new();
    for &(line, statement, misleading) in CASES {
        let error = match parse_line(line, 1) {
            Err(e) => e,
            Ok(parsed) => {
                failures.push(format!("{line}: parsed as {parsed:?}"));
                continue;
            }
        };
        let shown = error.to_string();
        if error.suggestion.as_deref() != Some(statement) {
            failures.push(format!("{line}: expected `{statement}`, got {:?}\n{shown}", error.suggestion));
        }
        for word in misleading {
            if shown.contains(&format!("did you mean `{word}")) {
                failures.push(format!("{line}: offers {word}\n{shown}"));
            }
        }
        // What is named is a statement that parses (or the REPL's own command).
        if !statement.starts_with(':') {
            assert!(parse_line(statement, 1).is_ok_and(|s| s.is_some()), "{line}: `{statement}` does not parse");
        }
    }
    assert!(failures.is_empty(), "{} of {} lines:\n{}", failures.len(), CASES.len(), failures.join("\n\n"));
}

#[test]
fn the_error_says_what_the_word_is_in_mnistlab() {
    let e = parse_line("epochs 5", 1).unwrap_err();
    let shown = e.to_string();
    assert!(shown.contains("for `epochs 5`, mnistlab gives the number of epochs to `fit`"), "{shown}");
    assert!(shown.contains("did you mean `fit 5`?"), "{shown}");
    let e = parse_line("model conv32 activation relu pool dense128", 1).unwrap_err();
    assert_eq!(e.col, 14, "the caret under `activation`");
    assert!(e.expected.contains("convN and denseN apply ReLU already"), "{}", e.expected);
    // `key=value`: the caret under the `=`, and the line written with a space.
    let e = parse_line("optimizer adam lr=0.001", 1).unwrap_err();
    assert_eq!(e.col, 18, "{e}");
    assert!(e.expected.contains("`lr VALUE`") && e.expected.contains("not `=`"), "{}", e.expected);
}

#[test]
fn keywords_read_in_any_case_and_full_width() {
    let parse = |line: &str| parse_line(line, 1).unwrap_or_else(|e| panic!("{line}:\n{e}")).expect("a statement").kind;
    let mnist = StatementKind::Load(LoadSource::Named { name: Named::Mnist, from: None });
    assert_eq!(parse("LOAD MNIST"), mnist);
    assert_eq!(parse("Load Mnist"), mnist);
    assert_eq!(parse("ｌｏａｄ　ｍｎｉｓｔ"), mnist);
    assert_eq!(parse("Fit 3"), StatementKind::Fit { epochs: 3, patience: None, checkpoint: None });
    assert_eq!(parse("fit ５"), StatementKind::Fit { epochs: 5, patience: None, checkpoint: None });
    assert_eq!(parse("ｆｉｔ　１２"), StatementKind::Fit { epochs: 12, patience: None, checkpoint: None });
    let adam = StatementKind::Optimizer(OptimizerSpec { optimizer: Optimizer::Adam { lr: 1e-3 }, body_lr: None });
    assert_eq!(parse("optimizer Adam"), adam);
    assert_eq!(
        parse("MODEL Conv32 POOL Dense128"),
        StatementKind::Model(ModelChoice::Layers(mnistlab::model::ModelSpec::new(vec![
            Layer::conv(32),
            Layer::MaxPool,
            Layer::dense(128)
        ])))
    );
    // A path keeps its case, and text in quotes is left as typed.
    assert_eq!(parse("load MyDigits"), StatementKind::Load(LoadSource::Dir("MyDigits".into())));
    assert_eq!(parse("print \"ＦＵＬＬ　Width\""), StatementKind::Print("ＦＵＬＬ　Width".into()));
    // Columns still count the characters typed.
    let e = parse_line("ｆｉｔ　ｘ", 1).unwrap_err();
    assert_eq!(e.col, 5, "{e}");
}

#[test]
fn a_misspelling_still_gets_its_spelling_guess() {
    assert_eq!(parse_line("lod mnist", 1).unwrap_err().suggestion.as_deref(), Some("load"));
    assert_eq!(parse_line("model conv32 pol dense10", 1).unwrap_err().suggestion.as_deref(), Some("pool"));
    assert_eq!(parse_line("xyzzy", 1).unwrap_err().suggestion, None);
}

#[test]
fn help_wraps_to_the_width_the_front_end_sets() {
    use mnistlab::session::{Event, Session};
    let help = |width: usize, source: &str| {
        let mut session = Session::new();
        session.set_text_width(width);
        let mut texts = Vec::new();
        session
            .run_source(source, None, &mut |e| {
                if let Event::Text(t) = e {
                    texts.push(t);
                }
            })
            .unwrap_or_else(|e| panic!("{source}: {e}"));
        texts.join("\n")
    };
    for width in [60, 80, 160] {
        for source in ["help", "help tune", "help dense", "help epochs", "help relu", "help adam"] {
            let text = help(width, source);
            assert!(text.lines().count() > 1 || source != "help", "{text}");
            for line in text.lines() {
                assert!(line.chars().count() <= width, "`{source}` at {width}:\n{line}");
            }
        }
    }
    // The listing's lines use the room they have: the longest at 160 is longer than at 80.
    let longest = |t: String| t.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(longest(help(160, "help tune")) > 80);
    let mut session = Session::new();
    let e = session.run_source("help xyzzy", None, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("no statement, layer or setting word `xyzzy`"), "{e}");
}
