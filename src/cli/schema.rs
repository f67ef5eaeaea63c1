//! `schema`: the JSON Schema of flow, mapping test and fixture files.

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SchemaKind {
    /// flows/*.yaml (committed as schemas/flow.schema.json)
    Flow,
    /// flows/tests/*.yaml (committed as schemas/mapping-test.schema.json)
    MappingTest,
    /// fixture files (committed as schemas/fixtures.schema.json)
    Fixtures,
}

pub fn run(kind: SchemaKind) -> anyhow::Result<()> {
    let schema = match kind {
        SchemaKind::Flow => beckn_adapter::config::json_schema::flow_file(),
        SchemaKind::MappingTest => beckn_adapter::mapping_test::format::schema(),
        SchemaKind::Fixtures => beckn_adapter::dry_run::fixtures::schema(),
    };
    print!("{}", beckn_adapter::config::json_schema::to_text(&schema));
    Ok(())
}
