//! Start a chat by typing someone's email.
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::{input_value, AppContext};
use crate::state::Action;

#[function_component(NewChat)]
pub fn new_chat() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let email = use_state(String::new);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);

    let onsubmit = {
        let (ctx, email, error, busy) = (ctx.clone(), email.clone(), error.clone(), busy.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *busy || email.trim().is_empty() {
                return;
            }
            busy.set(true);
            let (ctx, value, email, error, busy) =
                (ctx.clone(), (*email).clone(), email.clone(), error.clone(), busy.clone());
            spawn_local(async move {
                let result = ctx.backend.start_chat(value).await;
                busy.set(false);
                match result {
                    Ok(chat) => {
                        error.set(None);
                        email.set(String::new());
                        ctx.state.dispatch(Action::ChatOpened(chat));
                    }
                    Err(err) => error.set(Some(match err.code.as_str() {
                        "user_not_found" => "No one uses Parley with this email yet.".to_string(),
                        _ => err.message,
                    })),
                }
            });
        })
    };
    let oninput = {
        let (email, error) = (email.clone(), error.clone());
        Callback::from(move |e: InputEvent| {
            email.set(input_value(&e));
            error.set(None);
        })
    };
    html! {
        <form class="new-chat" {onsubmit} novalidate=true>
            <label for="new-chat-email" class="visually-hidden">{ "Start a chat by email" }</label>
            <div class="row">
                <input id="new-chat-email" name="new_chat_email" type="email" placeholder="Start a chat: friend@example.org"
                    autocomplete="off" value={(*email).clone()} {oninput}
                    aria-invalid={error.is_some().to_string()} aria-describedby="new-chat-error" />
                <button type="submit" id="new-chat-submit" class="primary" disabled={*busy}>{ "New chat" }</button>
            </div>
            <p id="new-chat-error" class="field-error" role="alert">{ (*error).clone().unwrap_or_default() }</p>
        </form>
    }
}
