import NNCommands

@main
enum Entry {
    static func main() async { await NN.main(nil) }
}
