//! `gqa chat`: a conversation on stdin and stdout. Each line is a user turn; the reply
//! streams back; the whole history is the next turn's prompt (the cache is refilled
//! by one prefill, as the page does after a change of G).

use std::io::{BufRead, Write};

use clap::Args;

use gqa::tokenizer::chat::ChatMessage;
use gqa::Result;

use super::generate::{open_session, params, print_piece, print_stats, system_messages, GenerateArgs};

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub generate: GenerateArgs,
    /// Print each reply's speed and memory on stderr.
    #[arg(long)]
    pub stats: bool,
}

pub fn run(a: ChatArgs) -> Result<()> {
    let g = &a.generate;
    let mut session = open_session(g)?;
    let params = params(g);
    let mut messages = system_messages(g);
    let mut turns = std::io::stdin().lock().lines();
    // --prompt, when given, is the first turn.
    let mut first = (!g.prompt.is_empty()).then(|| g.prompt.clone());
    loop {
        eprint!("> ");
        let _ = std::io::stderr().flush();
        let line = match first.take() {
            Some(p) => p,
            None => match turns.next() {
                Some(line) => line.map_err(|e| gqa::GqaError::io("stdin", e))?,
                None => break,
            },
        };
        if line.trim().is_empty() {
            break;
        }
        messages.push(ChatMessage::new("user", &line));
        let reply = session.chat(&messages, &params, &mut print_piece)?;
        println!();
        messages.push(ChatMessage::new("assistant", reply.trim()));
        if a.stats {
            print_stats(&session, g.json);
        }
    }
    Ok(())
}
