//! The desktop app's first screen: the address of the Parley server to use. It is checked (a
//! certificate the app refuses, no answer, something other than Parley) before it is kept.
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::{input_value, server_problem, AppContext};
use crate::{
    backend::UiError,
    state::{Action, Screen},
};

#[function_component(ChooseServer)]
pub fn choose_server() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let url = use_state(|| ctx.state.server.clone().unwrap_or_default());
    let error = use_state(|| None::<UiError>);
    let busy = use_state(|| false);

    let onsubmit = {
        let (ctx, url, error, busy) = (ctx.clone(), url.clone(), error.clone(), busy.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let typed = url.trim().to_string();
            if *busy || typed.is_empty() {
                return;
            }
            busy.set(true);
            let (ctx, error, busy) = (ctx.clone(), error.clone(), busy.clone());
            spawn_local(async move {
                let result = ctx.backend.set_server(typed.clone()).await;
                busy.set(false);
                match result {
                    Ok(instance) => {
                        // The native side may have completed the address (a scheme, say): show its own.
                        let kept = ctx.backend.server_url().await.ok().flatten().unwrap_or(typed);
                        ctx.state.dispatch(Action::Server(kept));
                        ctx.state.dispatch(Action::Instance(instance));
                        ctx.state.dispatch(Action::Show(Screen::Login));
                    }
                    Err(err) => error.set(Some(err)),
                }
            });
        })
    };
    let oninput = {
        let (url, error) = (url.clone(), error.clone());
        Callback::from(move |e: InputEvent| {
            url.set(input_value(&e));
            error.set(None);
        })
    };
    let back = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.state.dispatch(Action::Show(Screen::Login)))
    };
    let message = (*error).as_ref().map(server_problem);

    html! {
        <main class="centered">
            <form class="card auth" {onsubmit} novalidate=true aria-labelledby="server-title">
                <h1 id="server-title">{ "Which Parley server?" }</h1>
                <p class="muted">{ "Parley runs on servers of its own. Enter the address of the one your account is on, or will be." }</p>
                <label for="server-url">{ "Server address" }</label>
                <input id="server-url" name="server" type="url" inputmode="url" autocomplete="url" required=true
                    placeholder="https://chat.example.org" value={(*url).clone()} {oninput}
                    aria-invalid={message.is_some().to_string()} aria-describedby="server-url-error" />
                <p id="server-url-error" class="field-error" role="alert">{ message.unwrap_or_default() }</p>
                <button type="submit" id="server-submit" class="primary" disabled={*busy || url.trim().is_empty()}>{ if *busy { "Checking…" } else { "Continue" } }</button>
                if ctx.state.server.is_some() {
                    <p class="switch"><button type="button" id="server-back" class="link" onclick={back}>{ "Keep the current server" }</button></p>
                }
            </form>
        </main>
    }
}
