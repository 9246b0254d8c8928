//! Parser tests: every statement form and every kind of syntax error.

use std::path::PathBuf;

use mnistlab::data::augment::{FlipAxis, Interpolation, Op};
use mnistlab::data::fetch::Named;
use mnistlab::data::saved::SaveFormat;
use mnistlab::data::{PixelScaling, SplitKind};
use mnistlab::lang::docs::statements;
use mnistlab::lang::*;
use mnistlab::model::architecture::spec::{ModelSpec, OutputStyle};
use mnistlab::model::{DeviceKind, Layer, Optimizer, Schedule};

fn parse(line: &str) -> StatementKind {
    parse_line(line, 1).unwrap_or_else(|e| panic!("{line:?} did not parse:\n{e}")).expect("a statement").kind
}

fn error(line: &str) -> ParseError {
    match parse_line(line, 3) {
        Err(e) => e,
        Ok(st) => panic!("{line:?} parsed as {st:?}"),
    }
}

#[test]
fn load_forms() {
    assert_eq!(parse("load mnist"), StatementKind::Load(LoadSource::Named { name: Named::Mnist, from: None }));
    assert_eq!(
        parse("load fashion-mnist from /data/fm"),
        StatementKind::Load(LoadSource::Named { name: Named::FashionMnist, from: Some("/data/fm".into()) })
    );
    assert_eq!(
        parse("load idx a.gz \"b c.gz\""),
        StatementKind::Load(LoadSource::Idx { images: "a.gz".into(), labels: "b c.gz".into() })
    );
    assert_eq!(parse("load npz ~/mnist.npz"), StatementKind::Load(LoadSource::Npz("~/mnist.npz".into())));
    assert_eq!(parse("load pkl mnist.pkl.gz"), StatementKind::Load(LoadSource::Pkl("mnist.pkl.gz".into())));
    assert_eq!(parse("load csv train.csv"), StatementKind::Load(LoadSource::Csv("train.csv".into())));
    assert_eq!(parse("load prepared/m1"), StatementKind::Load(LoadSource::Dir("prepared/m1".into())));
    assert_eq!(parse("load folder mydigits"), StatementKind::Load(LoadSource::Folder("mydigits".into())));
    assert_eq!(parse("load folder \"my digits\""), StatementKind::Load(LoadSource::Folder("my digits".into())));
    assert_eq!(parse("load \"my data\""), StatementKind::Load(LoadSource::Dir("my data".into())));
}

#[test]
fn preprocessing_forms() {
    assert_eq!(parse("info"), StatementKind::Info);
    assert_eq!(parse("normalize"), StatementKind::Normalize(PixelScaling::Unit));
    assert_eq!(parse("normalize -1..1"), StatementKind::Normalize(PixelScaling::Symmetric));
    assert_eq!(parse("standardize"), StatementKind::Standardize);
    assert_eq!(parse("onehot"), StatementKind::OneHot);
    assert_eq!(parse("show samples 16"), StatementKind::ShowSamples { count: 16, split: None, class: None });
    assert_eq!(
        parse("show samples 8 test class 7"),
        StatementKind::ShowSamples { count: 8, split: Some(SplitKind::Test), class: Some(7) }
    );
}

#[test]
fn split_forms() {
    assert_eq!(
        parse("split 70/15/15 seed 42"),
        StatementKind::Split(SplitSpec::Percent { train: 70, val: 15, test: 15, seed: Some(42) })
    );
    assert_eq!(
        parse("split 80/10/10"),
        StatementKind::Split(SplitSpec::Percent { train: 80, val: 10, test: 10, seed: None })
    );
    assert_eq!(
        parse("split val 10 seed 1"),
        StatementKind::Split(SplitSpec::Validation { percent: 10, seed: Some(1) })
    );
    assert_eq!(parse("filter classes 0-4"), StatementKind::FilterClasses(vec![0, 1, 2, 3, 4]));
    assert_eq!(parse("filter classes 1,3,5"), StatementKind::FilterClasses(vec![1, 3, 5]));
    assert_eq!(parse("subset 60 per class seed 3"), StatementKind::Subset { per_class: 60, seed: Some(3) });
}

#[test]
fn other_forms() {
    assert_eq!(parse("save out/m"), StatementKind::Save { dir: "out/m".into(), format: SaveFormat::Idx });
    assert_eq!(parse("save out/m as png"), StatementKind::Save { dir: "out/m".into(), format: SaveFormat::Png });
    assert_eq!(parse("seed 7"), StatementKind::Seed(7));
    assert_eq!(parse("help"), StatementKind::Help(None));
    assert_eq!(parse("help split"), StatementKind::Help(Some("split".into())));
    assert_eq!(parse("run examples/prepare.lab"), StatementKind::Run(PathBuf::from("examples/prepare.lab")));
    assert_eq!(parse("print \"say \\\"hi\\\"\""), StatementKind::Print("say \"hi\"".into()));
    assert_eq!(parse("print hello world"), StatementKind::Print("hello world".into()));
}

#[test]
fn comments_blank_lines_and_spans() {
    assert_eq!(parse_line("   # only a comment", 1).unwrap(), None);
    assert_eq!(parse_line("", 1).unwrap(), None);
    let st = parse_line("  load mnist   # the digits", 4).unwrap().unwrap();
    assert_eq!(st.text, "load mnist");
    assert_eq!(st.span, Span { line: 4, col: 3, len: 10 });
    let program = parse_program("load mnist\n\n# c\nsplit 70/15/15 seed 42\ninfo\n").unwrap();
    let lines: Vec<usize> = program.iter().map(|s| s.span.line).collect();
    assert_eq!(lines, vec![1, 4, 5]);
}

#[test]
fn every_documented_example_parses() {
    for doc in statements() {
        let st = parse_line(doc.example, 1).unwrap_or_else(|e| panic!("example of {}:\n{e}", doc.keyword));
        assert!(st.is_some(), "{}", doc.keyword);
        assert!(doc.example.starts_with(doc.keyword));
    }
}

#[test]
fn unknown_statement_suggests_keyword() {
    let e = error("lod mnist");
    assert_eq!((e.line, e.col), (3, 1));
    assert!(e.expected.contains("a statement"), "{}", e.expected);
    assert_eq!(e.suggestion.as_deref(), Some("load"));
    let shown = e.to_string();
    assert!(shown.contains("3:1:") && shown.contains("lod mnist") && shown.contains("^"), "{shown}");
    assert!(shown.contains("did you mean `load`?"), "{shown}");
    assert_eq!(error("splt 70/15/15").suggestion.as_deref(), Some("split"));
    assert_eq!(error("xyzzy").suggestion, None);
}

#[test]
fn misspelt_argument_keyword() {
    let e = error("load mnst");
    assert_eq!(e.col, 6);
    assert_eq!(e.suggestion.as_deref(), Some("mnist"));
    let e = error("save out as pgn");
    assert_eq!(e.col, 13);
    assert_eq!(e.suggestion.as_deref(), Some("png"));
    let e = error("show sample 4");
    assert_eq!(e.suggestion.as_deref(), Some("samples"));
    let e = error("filter clases 0-4");
    assert_eq!(e.suggestion.as_deref(), Some("classes"));
}

#[test]
fn caret_points_under_the_error() {
    let e = error("split 70/15/10");
    let shown = e.to_string();
    assert!(e.expected.contains("add up to 100") && e.expected.contains("95"), "{}", e.expected);
    let lines: Vec<&str> = shown.lines().collect();
    let source_col = lines[1].find("split").unwrap();
    let caret_col = lines[2].find('^').unwrap();
    assert_eq!(caret_col - source_col, e.col - 1);
    assert_eq!(e.col, 7);
}

#[test]
fn missing_and_malformed_arguments() {
    assert!(error("seed").expected.contains("seed"));
    assert!(error("seed x").expected.contains("whole number"));
    assert!(error("split").expected.contains("70/15/15"));
    assert!(error("split 70-15-15").expected.contains("70/15/15"));
    assert!(error("split val 0").expected.contains("from 1 to 99"), "{}", error("split val 0").expected);
    assert!(error("split val 10 sed 1").expected.contains("end of the statement"));
    assert!(error("show samples").expected.contains("how many"));
    assert!(error("filter classes 4-1").expected.contains("range"));
    assert!(error("subset 10 per").expected.contains("class"));
    assert!(error("load idx only-one.gz").expected.contains("labels file"));
    assert!(error("load").expected.contains("what to load"));
    assert!(error("print \"unclosed").expected.contains("closing"));
    let e = error("info extra");
    assert!(e.expected.contains("end of the statement"));
    assert_eq!(e.col, 6);
}

#[test]
fn non_ascii_columns_count_characters() {
    let e = error("print \"é\" trailing");
    assert_eq!(e.col, 11);
}

#[test]
fn augment_forms() {
    assert_eq!(parse("augment"), StatementKind::Augment(AugmentSpec::Show));
    assert_eq!(parse("augment off"), StatementKind::Augment(AugmentSpec::Off));
    assert_eq!(parse("augment preview 16"), StatementKind::Augment(AugmentSpec::Preview(16)));
    assert_eq!(
        parse("augment rotate 10 shift 0.1 scale 0.9..1.1"),
        StatementKind::Augment(AugmentSpec::Ops {
            ops: vec![Op::rotate(10.0), Op::shift(0.1), Op::scale(0.9, 1.1)],
            force: false,
            interpolation: Interpolation::Bilinear,
        })
    );
    assert_eq!(
        parse("augment shift 3px flip h force nearest"),
        StatementKind::Augment(AugmentSpec::Ops {
            ops: vec![Op::shift_pixels(3.0), Op::flip(FlipAxis::Horizontal)],
            force: true,
            interpolation: Interpolation::Nearest,
        })
    );
    assert_eq!(
        parse("augment elastic 34 4 noise 0.05 erase 0.5 crop 2 shear 5"),
        StatementKind::Augment(AugmentSpec::Ops {
            ops: vec![Op::elastic(34.0, 4.0), Op::noise(0.05), Op::erase(0.5), Op::crop(2), Op::shear(5.0)],
            force: false,
            interpolation: Interpolation::Bilinear,
        })
    );
    assert_eq!(parse("expand 3x"), StatementKind::Expand(3));
    assert_eq!(error("augment rotat 10").suggestion.as_deref(), Some("rotate"));
    assert!(error("augment scale 1.1..0.9").expected.contains("range"));
    assert!(error("augment erase 2").expected.contains("an erasing probability (a number from 0 to 1)"));
    assert!(error("expand 2").expected.contains("2x"));
}

#[test]
fn model_and_training_forms() {
    assert_eq!(
        parse("model conv32 pool conv64k5 same pool dense128 dropout 0.5"),
        StatementKind::Model(ModelChoice::Layers(ModelSpec::new(vec![
            Layer::conv(32),
            Layer::MaxPool,
            Layer::Conv(mnistlab::model::architecture::layers::Conv {
                filters: 64,
                kernel: 5,
                same_padding: true,
                ..Default::default()
            }),
            Layer::MaxPool,
            Layer::dense(128),
            Layer::dropout(0.5),
        ])))
    );
    // A convolution's options in any order.
    let conv = mnistlab::model::architecture::layers::Conv {
        filters: 16,
        kernel: 7,
        same_padding: true,
        stride: 2,
        bias: false,
        relu: false,
    };
    for line in ["model conv16k7 same stride 2 nobias norelu", "model conv16k7 norelu stride 2 nobias same"] {
        assert_eq!(
            parse(line),
            StatementKind::Model(ModelChoice::Layers(ModelSpec::new(vec![Layer::Conv(conv.clone())]))),
            "{line}"
        );
    }
    // The output layer's options, last on the line, in any order.
    let style =
        |bias, batch_norm| ModelSpec { layers: vec![Layer::dense(8)], output: OutputStyle { bias, batch_norm } };
    assert_eq!(parse("model dense8 output nobias bn"), StatementKind::Model(ModelChoice::Layers(style(false, true))));
    assert_eq!(parse("model dense8 output bn nobias"), StatementKind::Model(ModelChoice::Layers(style(false, true))));
    assert_eq!(parse("model dense8 output bn"), StatementKind::Model(ModelChoice::Layers(style(true, true))));
    assert_eq!(parse("model dense8 output"), StatementKind::Model(ModelChoice::Layers(style(true, false))));
    assert!(parse_line("model dense8 output bn dense8", 1).is_err(), "the output layer's words come last");
    assert_eq!(parse("model an-m5"), StatementKind::Model(ModelChoice::Preset("an-m5".into())));
    assert_eq!(parse("model seed-cnn"), StatementKind::Model(ModelChoice::Preset("seed-cnn".into())));
    assert_eq!(error("model conv32 pol dense10").suggestion.as_deref(), Some("pool"));
    assert_eq!(error("model seed-cn").suggestion.as_deref(), Some("seed-cnn"));
    assert!(error("model conv32 dropout 1.5").expected.contains("a dropout rate (a number at least 0 and below 1)"));
    assert_eq!(parse("summary"), StatementKind::Summary);
    assert_eq!(
        parse("optimizer adam lr 1e-3 body 1e-4"),
        StatementKind::Optimizer(OptimizerSpec { optimizer: Optimizer::Adam { lr: 1e-3 }, body_lr: Some(1e-4) })
    );
    assert_eq!(
        parse("optimizer sgd momentum 0.9"),
        StatementKind::Optimizer(OptimizerSpec {
            optimizer: Optimizer::Sgd { lr: 0.01, momentum: 0.9 },
            body_lr: None
        })
    );
    assert_eq!(
        parse("optimizer adamw decay 0.05"),
        StatementKind::Optimizer(OptimizerSpec {
            optimizer: Optimizer::AdamW { lr: 1e-3, weight_decay: 0.05 },
            body_lr: None
        })
    );
    let e = error("optimizer adam momentum 0.9");
    assert!(e.expected.contains("`momentum` applies to sgd only"), "{e}");
    assert_eq!(e.col, 16, "the caret stands under `momentum`");
    assert!(error("optimizer sgd decay 0.1").expected.contains("`decay` applies to adamw only"));
    assert_eq!(error("optimizer adm").suggestion.as_deref(), Some("adam"));
    assert_eq!(parse("schedule onecycle"), StatementKind::Schedule(Schedule::OneCycle));
    assert_eq!(parse("batch 128"), StatementKind::Batch(128));
    assert_eq!(parse("loss crossentropy smoothing 0.1"), StatementKind::Loss { smoothing: Some(0.1) });
    assert_eq!(parse("fit 10 patience 3"), StatementKind::Fit { epochs: 10, patience: Some(3), checkpoint: None });
    assert_eq!(
        parse("fit 4 checkpoint runs/a"),
        StatementKind::Fit { epochs: 4, patience: None, checkpoint: Some("runs/a".into()) }
    );
    assert_eq!(parse("resume runs/a"), StatementKind::Resume("runs/a".into()));
    assert_eq!(parse("log tensorboard tb"), StatementKind::Log(Some("tb".into())));
    assert_eq!(parse("log off"), StatementKind::Log(None));
    assert_eq!(parse("evaluate"), StatementKind::Evaluate { split: None, first: None });
    assert_eq!(parse("evaluate val"), StatementKind::Evaluate { split: Some(SplitKind::Val), first: None });
    assert_eq!(parse("evaluate test 100"), StatementKind::Evaluate { split: Some(SplitKind::Test), first: Some(100) });
    assert_eq!(parse("evaluate 50"), StatementKind::Evaluate { split: None, first: Some(50) });
    assert!(error("evaluate test 0").expected.contains("from 1"));
    assert!(error("evaluate tset").expected.contains("`test`, `val` or `train`"));
    assert_eq!(parse("predictions"), StatementKind::Predictions { split: None, count: 20 });
    assert_eq!(parse("predictions val 5"), StatementKind::Predictions { split: Some(SplitKind::Val), count: 5 });
    assert_eq!(parse("predictions 7"), StatementKind::Predictions { split: None, count: 7 });
    assert_eq!(parse("plot history"), StatementKind::Plot(PlotKind::History));
    assert_eq!(error("plot histroy").suggestion.as_deref(), Some("history"));
    assert_eq!(parse("show mistakes 12"), StatementKind::ShowMistakes(12));
    assert_eq!(parse("save model m.safetensors"), StatementKind::SaveModel("m.safetensors".into()));
    assert_eq!(parse("load model m.safetensors"), StatementKind::LoadModel("m.safetensors".into()));
    assert_eq!(parse("predict digits/"), StatementKind::Predict("digits/".into()));
    assert_eq!(parse("device cuda"), StatementKind::Device(DeviceKind::Cuda));
    assert_eq!(parse("threads 2"), StatementKind::Threads(2));
}
