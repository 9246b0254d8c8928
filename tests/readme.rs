//! The README's statement reference is the docs table; this keeps them equal.

use mnistlab::lang::docs::markdown_reference;

#[test]
fn readme_reference_matches_the_docs_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- reference:start -->\n").expect("start marker") + "<!-- reference:start -->\n".len();
    let end = readme.find("<!-- reference:end -->").expect("end marker");
    assert_eq!(
        &readme[start..end],
        markdown_reference(),
        "README reference is stale: replace it with the output of `mnistlab reference`"
    );
}
