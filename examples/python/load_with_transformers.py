"""The seed's ModelLoader: find a model (a local directory, the project's
synced model, the Hugging Face cache, else a download through mdl into the
Hugging Face cache) and load it with transformers in float16.

    pip install 'mdl[transformers]'
    python examples/python/load_with_transformers.py gpt2
"""

import sys

import mdl


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "gpt2"
    loader = mdl.ModelLoader(name)
    model = loader.load_model()  # torch_dtype=float16, device_map="auto"; keywords override
    tokenizer = loader.load_tokenizer()  # pad_token = eos_token when it has none
    print(f"{name}: {type(model).__name__} from {loader.found_in} ({loader.model_path})")
    batch = tokenizer(["Model weights, locked and verified:"], return_tensors="pt", padding=True)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    out = model.generate(**batch, max_new_tokens=8, pad_token_id=tokenizer.pad_token_id)
    print(tokenizer.decode(out[0], skip_special_tokens=True))


if __name__ == "__main__":
    main()
